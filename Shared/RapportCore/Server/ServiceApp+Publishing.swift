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
  ///   - postgres: the pool, when the caller made it first (`makePostgres`) to share it with interceptors.
  ///   - otherServiceNames: further services `rpcs` builds (reported by health).
  ///   - interceptors: the service's own, run after the platform's error mapping and metrics.
  ///   - callers: who may call which RPC, enforced when peers present certificates (mutual TLS).
  public static func publishing(
    config: CommonConfig, schema: String, migrations: [Migration], serviceName: String,
    otherServiceNames: [String] = [], clients: [GRPCClient<HTTP2ClientTransport.Posix>] = [],
    postgres given: PostgresClient? = nil, interceptors: [any ServerInterceptor] = [], callers: CallerPolicy? = nil,
    logger: Logger,
    workers: (PostgresClient) -> [any Service] = { _ in [] },
    rpcs: (PostgresClient) -> [any RegistrableRPCService]
  ) throws -> ServiceApp {
    let postgres = try given ?? makePostgres(config: config, logger: logger)
    let notifier = OutboxNotifier()
    let outbox = Outbox(schema: schema)
    return ServiceApp(
      config: config, postgres: postgres, migrator: Migrator(schema: schema, migrations: migrations),
      rpcServices: rpcs(postgres) + [
        EventFeedService(client: postgres, outbox: outbox, notifier: notifier, logger: logger)
      ],
      serviceNames: Set([serviceName, "rapport.events.v1.EventFeed"] + otherServiceNames),
      clients: clients,
      workers: [
        OutboxListener(client: postgres, outbox: outbox, notifier: notifier, logger: logger),
        outbox.headGauge(postgres, logger: logger),
      ] + workers(postgres),
      notifier: notifier, interceptors: interceptors, callers: callers, logger: logger)
  }

  /// The service's database pool, from its configuration.
  public static func makePostgres(config: CommonConfig, logger: Logger) throws -> PostgresClient {
    guard let url = config.databaseURL else { throw ConfigurationError("\(config.name) needs a database URL") }
    return PostgresClient(
      configuration: url.clientConfiguration(
        maxConnections: config.maxDatabaseConnections, applicationName: PoolGauge.applicationName(for: config.name)),
      backgroundLogger: logger)
  }
}
