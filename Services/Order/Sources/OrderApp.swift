import GRPCCore
import Logging
import RapportCore
import RapportProtos

/// Builds the order service process; `main` and the tests both call this.
public enum OrderApp {
  public static let defaultPort = 50052

  /// Reads the common settings plus `customer-addr` and `customer-timeout-ms`.
  public static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try build(
      config: CommonConfig(settings: settings, name: "order", defaultPort: defaultPort),
      customerAddress: settings.address("customer-addr", default: "127.0.0.1:50051"),
      customerTimeout: settings.milliseconds("customer-timeout-ms", default: 1000), logger: logger)
  }

  public static func build(
    config: CommonConfig, customerAddress: HostPort, customerTimeout: Duration = .seconds(1), logger: Logger
  ) throws -> ServiceApp {
    let customerClient = try GRPCClientService.plaintext(to: customerAddress)
    return try .publishing(
      config: config, schema: OrderMigrations.schema, migrations: OrderMigrations.all,
      serviceName: "rapport.order.v1.OrderService", clients: [customerClient], logger: logger,
      workers: { postgres in
        let store = OrderStore(client: postgres, logger: logger)
        return [
          EventSubscription.customerLifecycle(
            client: customerClient, schema: OrderMigrations.schema, postgres: postgres, logger: logger, effect: store.applyCustomerEvent)
        ]
      }
    ) { postgres in
      [
        OrderRPCs(
          store: OrderStore(client: postgres, logger: logger),
          customers: Rapport_Customer_V1_CustomerService.Client(wrapping: customerClient),
          customerTimeout: customerTimeout, logger: logger)
      ]
    }
  }
}
