import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import PostgresNIO
import ServiceLifecycle

extension ServiceApp {
  /// A service with its own schema that publishes events: its database pool, its migrations (with the
  /// outbox), its RPCs, plus `EventFeed` over its outbox and the LISTEN worker that wakes the feed.
  /// - Parameters:
  ///   - workers: builds the service's own background loops (feed subscriptions, scanners) from its pool.
  ///   - rpcs: builds the service's RPC handlers from its pool.
  public static func publishing(
    config: CommonConfig, schema: String, migrations: [Migration], serviceName: String,
    clients: [GRPCClient<HTTP2ClientTransport.Posix>] = [], logger: Logger,
    workers: (PostgresClient) -> [any Service] = { _ in [] },
    rpcs: (PostgresClient) -> [any RegistrableRPCService]
  ) throws -> ServiceApp {
    guard let url = config.databaseURL else { throw ConfigurationError("\(config.name) needs a database URL") }
    let postgres = PostgresClient(
      configuration: url.clientConfiguration(maxConnections: config.maxDatabaseConnections),
      backgroundLogger: logger)
    let notifier = OutboxNotifier()
    let outbox = Outbox(schema: schema)
    return ServiceApp(
      config: config, postgres: postgres, migrator: Migrator(schema: schema, migrations: migrations),
      rpcServices: rpcs(postgres) + [
        EventFeedService(client: postgres, outbox: outbox, notifier: notifier, logger: logger)
      ],
      serviceNames: [serviceName, "rapport.events.v1.EventFeed"],
      clients: clients,
      workers: [OutboxListener(client: postgres, outbox: outbox, notifier: notifier, logger: logger)]
        + workers(postgres),
      notifier: notifier, logger: logger)
  }
}
