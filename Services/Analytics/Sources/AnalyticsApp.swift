import GRPCCore
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// Builds the analytics service process; `main` and the tests both call this.
public enum AnalyticsApp {
  public static let defaultPort = 50054

  /// Reads the common settings plus `customer-addr`, `order-addr` and `support-addr` (the feeds it consumes).
  public static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try build(
      config: CommonConfig(settings: settings, name: "analytics", defaultPort: defaultPort),
      customerAddress: settings.address("customer-addr", default: "127.0.0.1:50051"),
      orderAddress: settings.address("order-addr", default: "127.0.0.1:50052"),
      supportAddress: settings.address("support-addr", default: "127.0.0.1:50053"), logger: logger)
  }

  /// Who may call what (enforced under mutual TLS): metrics from the gateway and operators; its feed
  /// (no consumer yet) from nobody.
  public static let callers = CallerPolicy([
    "rapport.analytics.v1.AnalyticsService": [CallerPolicy.Caller.gateway, CallerPolicy.Caller.operator]
  ])

  public static func build(
    config: CommonConfig, customerAddress: HostPort? = nil, orderAddress: HostPort, supportAddress: HostPort,
    logger: Logger
  ) throws -> ServiceApp {
    var sources = [
      ("order", try GRPCClientService.client(to: orderAddress, config: config), [Rapport_Events_V1_OrderPlaced.eventType]),
      ("support", try GRPCClientService.client(to: supportAddress, config: config), [Rapport_Events_V1_TicketOpened.eventType, Rapport_Events_V1_TicketStatusChanged.eventType]),
    ]
    if let customerAddress {
      sources.append(("customer", try GRPCClientService.client(to: customerAddress, config: config), [Rapport_Events_V1_CustomerMerged.eventType]))
    }
    return try .publishing(
      config: config, schema: AnalyticsMigrations.schema, migrations: AnalyticsMigrations.all,
      serviceName: "rapport.analytics.v1.AnalyticsService", clients: sources.map(\.1), callers: callers, logger: logger,
      workers: { postgres in
        let store = AnalyticsStore(client: postgres, logger: logger)
        return sources.map { source, client, types in
          EventSubscription(
            source: source, client: client, types: types, logger: logger,
            cursor: { try await store.cursor(source: source) },
            apply: { batch in try await store.apply(batch, from: source) })
        }
      },
      rpcs: { postgres in [AnalyticsRPCs(store: AnalyticsStore(client: postgres, logger: logger), logger: logger)] })
  }
}
