import Logging
import RapportCore

/// Builds the customer service process; `main` and the tests both call this.
public enum CustomerApp {
  public static let defaultPort = 50051

  public static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try build(config: CommonConfig(settings: settings, name: "customer", defaultPort: defaultPort), logger: logger)
  }

  /// Who may call what (enforced under mutual TLS): the services that resolve and read customers, and
  /// operators (analytics only reads them); merging, erasing, exporting and importing only operators; the feed only its consumers.
  public static let callers: CallerPolicy = {
    typealias C = CallerPolicy.Caller
    let service = "rapport.customer.v1.CustomerService"
    return CallerPolicy([
      service: [C.gateway, C.order, C.support, C.operator],
      // Analytics reads a customer's tags and attributes when the feed says they changed.
      "\(service)/GetCustomer": [C.gateway, C.order, C.support, C.operator, C.analytics],
      "\(service)/MergeCustomers": [C.operator], "\(service)/EraseCustomer": [C.operator],
      "\(service)/ExportCustomer": [C.operator], "\(service)/ImportCustomers": [C.operator],
      CallerPolicy.eventFeed: [C.order, C.support, C.analytics],
    ])
  }()

  public static func build(config: CommonConfig, logger: Logger) throws -> ServiceApp {
    try .publishing(
      config: config, schema: CustomerMigrations.schema, migrations: CustomerMigrations.all,
      serviceName: "rapport.customer.v1.CustomerService", callers: callers, logger: logger
    ) { pools in
      [CustomerRPCs(store: CustomerStore(client: pools.main, genericPlans: pools.genericPlans, logger: logger), logger: logger)]
    }
  }
}
