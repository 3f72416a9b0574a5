import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportCore
import RapportProtos
import ServiceLifecycle

/// Builds the gateway process; `main` and the tests both call this.
public enum GatewayApp {
  public static let defaultPort = 50050

  /// Reads the common settings plus the four service addresses and `view-timeout-ms` (default budget
  /// of a view when the caller sends no deadline; also the most a view may take).
  public static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try build(
      config: CommonConfig(settings: settings, name: "gateway", defaultPort: defaultPort, needsDatabase: false),
      upstreams: Upstreams(
        customer: settings.address("customer-addr", default: "127.0.0.1:50051"),
        order: settings.address("order-addr", default: "127.0.0.1:50052"),
        support: settings.address("support-addr", default: "127.0.0.1:50053"),
        analytics: settings.address("analytics-addr", default: "127.0.0.1:50054")),
      viewTimeout: settings.milliseconds("view-timeout-ms", default: 2000), logger: logger)
  }

  /// The addresses of the services the gateway composes.
  public struct Upstreams: Sendable {
    public var customer, order, support, analytics: HostPort
    public init(customer: HostPort, order: HostPort, support: HostPort, analytics: HostPort) {
      (self.customer, self.order, self.support, self.analytics) = (customer, order, support, analytics)
    }
  }

  public static func build(
    config: CommonConfig, upstreams: Upstreams, viewTimeout: Duration = .seconds(2), logger: Logger
  ) throws -> ServiceApp {
    let clients = try [upstreams.customer, upstreams.order, upstreams.support, upstreams.analytics]
      .map(GRPCClientService.plaintext(to:))
    let rpcs = GatewayRPCs(
      customers: .init(wrapping: clients[0]), orders: .init(wrapping: clients[1]),
      support: .init(wrapping: clients[2]), analytics: .init(wrapping: clients[3]),
      defaultBudget: viewTimeout, maximumBudget: max(viewTimeout, .seconds(10)), logger: logger)
    return ServiceApp(
      config: config, postgres: nil, migrator: nil, rpcServices: [rpcs],
      serviceNames: ["rapport.gateway.v1.PartnerGateway"], clients: clients,
      workers: [ClosureService { await warmUp(clients, logger: logger) }], logger: logger)
  }

  /// Opens the connection to every upstream at start (one health check each, answered or not), so the
  /// first views do not pay for four TCP and HTTP/2 handshakes.
  static func warmUp(_ clients: [GRPCClient<HTTP2ClientTransport.Posix>], logger: Logger) async {
    var callOptions = CallOptions.defaults
    callOptions.timeout = .seconds(2)
    callOptions.waitForReady = true
    let options = callOptions
    await withTaskGroup(of: Void.self) { group in
      for client in clients {
        group.addTask {
          let health = Grpc_Health_V1_Health.Client(wrapping: client)
          do { _ = try await health.check(.init(), options: options) } catch {
            logger.debug("upstream not answering yet", metadata: ["error": "\(type(of: error))"])
          }
        }
      }
    }
  }
}
