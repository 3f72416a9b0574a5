import Logging
import RapportCore

/// Builds the support service process; `main` and the tests both call this.
public enum SupportApp {
  public static let defaultPort = 50053

  /// Reads the common settings plus `customer-addr` (the customer feed it consumes).
  public static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try build(
      config: CommonConfig(settings: settings, name: "support", defaultPort: defaultPort),
      customerAddress: settings.address("customer-addr", default: "127.0.0.1:50051"), logger: logger)
  }

  /// - Parameter customerAddress: where to consume `CustomerMerged`/`CustomerErased`; nil runs without
  ///   (tests of the ticket RPCs alone).
  public static func build(config: CommonConfig, customerAddress: HostPort? = nil, logger: Logger) throws -> ServiceApp {
    let customerClient = try customerAddress.map { try GRPCClientService.plaintext(to: $0) }
    return try .publishing(
      config: config, schema: SupportMigrations.schema, migrations: SupportMigrations.all,
      serviceName: "rapport.support.v1.SupportService", clients: customerClient.map { [$0] } ?? [], logger: logger,
      workers: { postgres in
        guard let customerClient else { return [] }
        let store = SupportStore(client: postgres, logger: logger)
        return [
          EventSubscription.customerLifecycle(
            client: customerClient, schema: SupportMigrations.schema, postgres: postgres, logger: logger, effect: store.applyCustomerEvent)
        ]
      }
    ) { postgres in
      [SupportRPCs(store: SupportStore(client: postgres, logger: logger), logger: logger)]
    }
  }
}
