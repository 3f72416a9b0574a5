import GRPCCore
import GRPCNIOTransportHTTP2
import ServiceLifecycle

/// Runs a gRPC client's connections for the lifetime of the process.
public struct GRPCClientService: Service {
  public let client: GRPCClient<HTTP2ClientTransport.Posix>

  public init(client: GRPCClient<HTTP2ClientTransport.Posix>) { self.client = client }

  public func run() async throws {
    try await withGracefulShutdownHandler {
      try await client.runConnections()
    } onGracefulShutdown: {
      client.beginGracefulShutdown()
    }
  }

  /// An HTTP/2 client for another service at `address` (mutual TLS when `config.tls` is set).
  public static func client(to address: HostPort, config: CommonConfig) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
    let transport = try HTTP2ClientTransport.Posix(
      target: address.target,
      transportSecurity: config.outbound,
      config: .defaults { $0.backoff.max = .seconds(2) })
    return GRPCClient(transport: transport)
  }
}
