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
  ///   - rpcs: builds the service's RPC handlers from its pools (`Pools`: the main pool and the generic-plan pool).
  ///   - postgres: the pool, when the caller made it first (`makePostgres`) to share it with interceptors.
  ///   - otherServiceNames: further services `rpcs` builds (reported by health).
  ///   - interceptors: the service's own, run after the platform's error mapping and metrics.
  ///   - callers: who may call which RPC, enforced when peers present certificates (mutual TLS).
  public static func publishing(
    config: CommonConfig, schema: String, migrations: [Migration], serviceName: String,
    otherServiceNames: [String] = [], clients: [GRPCClient<HTTP2ClientTransport.Posix>] = [],
    postgres given: Database? = nil, interceptors: [any ServerInterceptor] = [], callers: CallerPolicy? = nil,
    logger: Logger,
    workers: (Database) -> [any Service] = { _ in [] },
    rpcs: (Pools) -> [any RegistrableRPCService]
  ) throws -> ServiceApp {
    let postgres = try given ?? makePostgres(config: config, logger: logger)
    let genericPlans = try makePostgres(config: config, logger: logger, genericPlans: true)
    let notifier = OutboxNotifier()
    let outbox = Outbox(schema: schema)
    return ServiceApp(
      config: config, postgres: postgres, genericPlans: genericPlans,
      migrator: Migrator(schema: schema, migrations: migrations),
      rpcServices: rpcs(Pools(main: postgres, genericPlans: genericPlans)) + [
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

  /// The service's database pool, from its configuration; with `genericPlans`, its generic-plan pool
  /// (`Pools.genericPlans`: generic plans, its own `application_name`, `<name>-generic-plans`).
  public static func makePostgres(config: CommonConfig, logger: Logger, genericPlans: Bool = false) throws -> Database {
    guard let url = config.databaseURL else { throw ConfigurationError("\(config.name) needs a database URL") }
    let client = PostgresClient(
      configuration: url.clientConfiguration(
        maxConnections: genericPlans ? Pools.genericPlanConnections : config.maxDatabaseConnections,
        applicationName: PoolGauge.applicationName(for: genericPlans ? "\(config.name)-generic-plans" : config.name),
        genericPlans: genericPlans),
      backgroundLogger: logger)
    return Database(client, pool: genericPlans ? "generic_plans" : "main")
  }
}
