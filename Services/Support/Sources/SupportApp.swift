import Logging
import RapportCore

/// Builds the support service process; `main` and the tests both call this.
public enum SupportApp {
  public static let defaultPort = 50053

  public static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try build(config: CommonConfig(settings: settings, name: "support", defaultPort: defaultPort), logger: logger)
  }

  public static func build(config: CommonConfig, logger: Logger) throws -> ServiceApp {
    try .publishing(
      config: config, schema: SupportMigrations.schema, migrations: SupportMigrations.all,
      serviceName: "rapport.support.v1.SupportService", logger: logger
    ) { postgres in
      [SupportRPCs(store: SupportStore(client: postgres, logger: logger), logger: logger)]
    }
  }
}
