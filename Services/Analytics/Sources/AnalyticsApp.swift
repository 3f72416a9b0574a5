import GRPCCore
import Logging
import PostgresNIO
import RapportCore
import RapportProtos
import ServiceLifecycle
import Synchronization

/// Builds the analytics service process; `main` and the tests both call this.
public enum AnalyticsApp {
  public static let defaultPort = 50054

  /// Reads the common settings plus `customer-addr`, `order-addr` and `support-addr` (the feeds it
  /// consumes), `rfm-interval-s` (how often the RFM quintile edges are recomputed, default 3600),
  /// `fit-interval-s` (how often BG/NBD and Gamma-Gamma are refitted, default 3600) and
  /// `monthly-discount-rate` (CLV's, default 0.01), `segment-interval-s` (how often every rule segment
  /// is recomputed for everyone, default 300), `report-time-zones` (comma-separated IANA zones the
  /// sales summaries and cohorts are kept in besides UTC, default none) and `learned-time-zones` (how
  /// many other zones reads ask for are kept too, default 4; 0: none) and `sub-hour-time-zones` (whether
  /// one zone per clock of tzdata a half or quarter hour off UTC is kept too, built in the background:
  /// `KeptZone.subHour`; default true: the twelve zones make reads in those clocks fast from the first
  /// one; every order the feed applies moves their rows too, and on the bench machine analytics keeps up
  /// with the order service's maximum rate with them — docs/BENCHMARKS.md; false drops them).
  public static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try build(
      config: CommonConfig(settings: settings, name: "analytics", defaultPort: defaultPort),
      customerAddress: settings.address("customer-addr", default: "127.0.0.1:50051"),
      orderAddress: settings.address("order-addr", default: "127.0.0.1:50052"),
      supportAddress: settings.address("support-addr", default: "127.0.0.1:50053"),
      rfmInterval: .seconds(try positive(settings.int("rfm-interval-s", default: 3600), "rfm-interval-s")),
      fitInterval: .seconds(try positive(settings.int("fit-interval-s", default: 3600), "fit-interval-s")),
      segmentInterval: .seconds(try positive(settings.int("segment-interval-s", default: 300), "segment-interval-s")),
      monthlyDiscountRate: try discountRate(settings.string("monthly-discount-rate")),
      reportTimeZones: (settings.string("report-time-zones") ?? "").split(separator: ",").map {
        $0.trimmingCharacters(in: .whitespaces)
      },
      learnedTimeZones: try atLeastZero(settings.int("learned-time-zones", default: defaultLearnedTimeZones), "learned-time-zones"),
      subHourTimeZones: try settings.bool("sub-hour-time-zones", default: true),
      logger: logger)
  }

  public static let defaultMonthlyDiscountRate = 0.01
  public static let defaultLearnedTimeZones = 4

  private static func discountRate(_ raw: String?) throws -> Double {
    guard let raw else { return defaultMonthlyDiscountRate }
    guard let rate = Double(raw), rate >= 0, rate < 1 else {
      throw ConfigurationError("monthly-discount-rate must be a number in [0, 1), got '\(raw)'")
    }
    return rate
  }

  private static func atLeastZero(_ value: Int, _ name: String) throws -> Int {
    guard value >= 0 else { throw ConfigurationError("\(name) must be at least 0, got \(value)") }
    return value
  }

  private static func positive(_ value: Int, _ name: String) throws -> Int {
    guard value > 0 else { throw ConfigurationError("\(name) must be at least 1, got \(value)") }
    return value
  }

  /// Who may call what (enforced under mutual TLS): metrics from the gateway and operators; its feed
  /// (segment membership changes, for marketing automation) from operators' tools.
  public static let callers = CallerPolicy([
    "rapport.analytics.v1.AnalyticsService": [CallerPolicy.Caller.gateway, CallerPolicy.Caller.operator],
    CallerPolicy.eventFeed: [CallerPolicy.Caller.operator],
  ])

  public static func build(
    config: CommonConfig, customerAddress: HostPort? = nil, orderAddress: HostPort, supportAddress: HostPort,
    rfmInterval: Duration = .seconds(3600), fitInterval: Duration = .seconds(3600), segmentInterval: Duration = .seconds(300),
    monthlyDiscountRate: Double = defaultMonthlyDiscountRate, reportTimeZones: [String] = [],
    learnedTimeZones: Int = defaultLearnedTimeZones, subHourTimeZones: Bool = false, logger: Logger
  ) throws -> ServiceApp {
    let reportZones = try reportTimeZones.map { name in
      guard let zone = KeptZone(name) else {
        throw ConfigurationError("report-time-zones must list IANA time zone names such as Europe/Paris, got '\(name)'")
      }
      return zone
    }
    let scheduled = ScheduledValues()
    let zoneRequests = ZoneRequests()
    let recommendations = RecommendationCache()
    var sources = [
      (
        "order", try GRPCClientService.client(to: orderAddress, config: config),
        [
          Rapport_Events_V1_OrderPlaced.eventType, Rapport_Events_V1_OrderCancelled.eventType,
          Rapport_Events_V1_OrderRefunded.eventType,
        ]
      ),
      (
        "support", try GRPCClientService.client(to: supportAddress, config: config),
        [
          Rapport_Events_V1_TicketOpened.eventType, Rapport_Events_V1_TicketStatusChanged.eventType,
          Rapport_Events_V1_SlaBreached.eventType, Rapport_Events_V1_TicketRated.eventType,
        ]
      ),
    ]
    let failures = FeedFailures()
    if let customerAddress {
      sources.append(
        (
          "customer", try GRPCClientService.client(to: customerAddress, config: config),
          [
            Rapport_Events_V1_CustomerMerged.eventType, Rapport_Events_V1_ConsentChanged.eventType,
            Rapport_Events_V1_CustomerErased.eventType, Rapport_Events_V1_CustomerCreated.eventType,
            Rapport_Events_V1_CustomerUpdated.eventType,
          ]
        ))
    }
    return try .publishing(
      config: config, schema: AnalyticsMigrations.schema, migrations: AnalyticsMigrations.all,
      serviceName: "rapport.analytics.v1.AnalyticsService", clients: sources.map(\.1), callers: callers, logger: logger,
      workers: { postgres in
        let store = AnalyticsStore(
          client: postgres, logger: logger, monthlyDiscountRate: monthlyDiscountRate, scheduled: scheduled,
          recommendations: recommendations, zoneRequests: zoneRequests)
        let segments = SegmentEvaluator(store: store, logger: logger)
        let zonesKept = Mutex(false)
        let profiles = sources.first { $0.0 == "customer" }.map { CustomerProfiles.reading(from: $0.1) }
        let feeds: [any Service] = sources.map { source, client, types in
          EventSubscription(
            source: source, client: client, types: types, logger: logger, failures: failures,
            cursor: { try await store.cursor(source: source) },
            apply: { batch in
              let read = source == "customer" ? try await profiles?.profiles(for: batch) : nil
              try await store.apply(batch, from: source, profiles: read ?? [:])
              segments.mark(AnalyticsStore.customers(of: batch))
            })
        }
        return feeds + [
          segments,
          // Once, at start (a new zone's rows are computed then); again a minute later if that failed.
          Periodic("kept zones", every: .seconds(60), logger: logger) {
            guard !zonesKept.withLock({ $0 }) else { return }
            try await store.keepZones(reportZones, building: subHourTimeZones ? KeptZone.subHour : [])
            zonesKept.withLock { $0 = true }
          },
          // Zones reads asked for: kept (built a month at a time), or dropped when no longer read.
          Periodic("learned zones", every: .seconds(2), logger: logger) {
            guard zonesKept.withLock({ $0 }) else { return }
            try await store.keepLearnedZones(limit: learnedTimeZones)
          },
          Periodic("rfm edges", every: rfmInterval, logger: logger) { try await store.computeRfmEdges() },
          Periodic("rfm segments", every: .seconds(1), logger: logger) { try await store.scorePendingSegments() },
          Periodic("recommendations", every: .milliseconds(250), logger: logger) {
            try await store.addingPendingPurchases(limit: 5_000)
          },
          // The ranking model's size in memory (it grows with the pairs counted; 0 until a read loads it).
          Periodic("recommendation model size", every: .seconds(5), logger: logger) {
            let size = recommendations.size
            RPCMetrics.current?.gauge("rapport_analytics_recommendation_products", []).record(size.products)
            RPCMetrics.current?.gauge("rapport_analytics_recommendation_pairs", []).record(size.pairs)
          },
          Periodic("prediction fit", every: fitInterval, logger: logger) { try await store.fitAllPredictionModels() },
          Periodic("segments", every: segmentInterval, logger: logger) { try await store.evaluateAllSegments(customers: nil) },
        ]
      },
      rpcs: { pools in
        [
          AnalyticsRPCs(
            store: AnalyticsStore(
              client: pools.main, logger: logger, monthlyDiscountRate: monthlyDiscountRate, scheduled: scheduled,
              recommendations: recommendations, zoneRequests: zoneRequests, genericPlans: pools.genericPlans),
            feeds: sources.map { .init(source: $0.0, feed: .init(wrapping: $0.1), types: $0.2) }, failures: failures,
            logger: logger)
        ]
      })
  }
}
