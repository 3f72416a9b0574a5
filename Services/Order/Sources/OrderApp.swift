import GRPCCore
import Logging
import RapportCore
import RapportProtos

/// Builds the order service process; `main` and the tests both call this.
public enum OrderApp {
  public static let defaultPort = 50052

  /// Timed work of the order service.
  public struct Timing: Sendable {
    /// A cart idle this long, with a customer and no order, is abandoned.
    public var abandonCartAfter: Duration = .seconds(3600)
    /// How often carts and due dates are scanned.
    public var scanInterval: Duration = .seconds(60)
    /// Where "now" comes from (tests move it).
    public var clock: WallClock = .system

    public init(abandonCartAfter: Duration = .seconds(3600), scanInterval: Duration = .seconds(60), clock: WallClock = .system) {
      self.abandonCartAfter = abandonCartAfter
      self.scanInterval = scanInterval
      self.clock = clock
    }
  }

  /// Reads the common settings plus `customer-addr`, `customer-timeout-ms`, `cart-abandon-after-s`
  /// (default 3600), `scan-interval-ms` (default 60000) and `clock-file` (see `Settings.clock`).
  public static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try build(
      config: CommonConfig(settings: settings, name: "order", defaultPort: defaultPort),
      customerAddress: settings.address("customer-addr", default: "127.0.0.1:50051"),
      customerTimeout: settings.milliseconds("customer-timeout-ms", default: 1000),
      timing: Timing(
        abandonCartAfter: .seconds(try settings.int("cart-abandon-after-s", default: 3600)),
        scanInterval: settings.milliseconds("scan-interval-ms", default: 60_000), clock: settings.clock),
      logger: logger)
  }

  /// Who may call what (enforced under mutual TLS): orders from the gateway, support (tickets about
  /// orders) and operators; imports only operators; the feed from its consumers.
  public static let callers: CallerPolicy = {
    typealias C = CallerPolicy.Caller
    return CallerPolicy([
      "rapport.order.v1.OrderService": [C.gateway, C.support, C.operator],
      "rapport.order.v1.OrderService/ImportOrders": [C.operator],
      CallerPolicy.eventFeed: [C.analytics, C.support, C.gateway],
    ])
  }()

  public static func build(
    config: CommonConfig, customerAddress: HostPort, customerTimeout: Duration = .seconds(1), timing: Timing = Timing(),
    logger: Logger
  ) throws -> ServiceApp {
    let customerClient = try GRPCClientService.client(to: customerAddress, config: config)
    return try .publishing(
      config: config, schema: OrderMigrations.schema, migrations: OrderMigrations.all,
      serviceName: "rapport.order.v1.OrderService", clients: [customerClient], callers: callers, logger: logger,
      workers: { postgres in
        let store = OrderStore(client: postgres, logger: logger)
        return [
          EventSubscription.customerLifecycle(
            client: customerClient, schema: OrderMigrations.schema, postgres: postgres, logger: logger,
            effect: store.applyCustomerEvent),
          OrderScanner.periodic(
            store: store, clock: timing.clock, interval: timing.scanInterval, abandonAfter: timing.abandonCartAfter,
            logger: logger),
        ]
      }
    ) { pools in
      [
        OrderRPCs(
          store: OrderStore(client: pools.main, logger: logger, genericPlans: pools.genericPlans),
          customers: CustomerDirectory(
            client: Rapport_Customer_V1_CustomerService.Client(wrapping: customerClient), timeout: customerTimeout,
            logger: logger),
          clock: timing.clock, logger: logger)
      ]
    }
  }
}
