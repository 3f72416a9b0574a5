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

  /// A plaintext HTTP/2 client for another service at `address`, with explicit limits.
  public static func plaintext(to address: HostPort) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
    let transport = try HTTP2ClientTransport.Posix(
      target: .dns(host: address.host, port: address.port),
      transportSecurity: .plaintext,
      config: .defaults { $0.backoff.max = .seconds(2) })
    return GRPCClient(transport: transport)
  }
}
