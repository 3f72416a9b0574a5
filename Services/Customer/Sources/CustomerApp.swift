import Logging
import RapportCore

/// Builds the customer service process; `main` and the tests both call this.
public enum CustomerApp {
  public static let defaultPort = 50051

  public static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try build(config: CommonConfig(settings: settings, name: "customer", defaultPort: defaultPort), logger: logger)
  }

  public static func build(config: CommonConfig, logger: Logger) throws -> ServiceApp {
    try .publishing(
      config: config, schema: CustomerMigrations.schema, migrations: CustomerMigrations.all,
      serviceName: "rapport.customer.v1.CustomerService", logger: logger
    ) { postgres in
      [CustomerRPCs(store: CustomerStore(client: postgres, logger: logger), logger: logger)]
    }
  }
}
