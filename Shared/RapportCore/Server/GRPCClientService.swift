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

  /// Name resolution of the clients: the transport's defaults plus `EveryAddress`.
  public static var resolvers: NameResolverRegistry {
    var registry = NameResolverRegistry.defaults
    registry.registerFactory(EveryAddress.Factory())
    return registry
  }

  /// Calls go to the resolved endpoints in turn (one endpoint per replica with `EveryAddress`).
  public static let roundRobin = ServiceConfig(loadBalancingConfig: [.roundRobin])

  /// An HTTP/2 client for another service at `address` (mutual TLS when `config.tls` is set).
  public static func client(to address: HostPort, config: CommonConfig) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
    let transport = try HTTP2ClientTransport.Posix(
      target: address.target,
      transportSecurity: config.outbound,
      config: .defaults { $0.backoff.max = .seconds(2) },
      resolverRegistry: resolvers,
      serviceConfig: roundRobin)
    return GRPCClient(transport: transport, interceptors: RapportTracing.clientInterceptors)
  }
}
