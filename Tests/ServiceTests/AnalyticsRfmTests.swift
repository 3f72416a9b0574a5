import Foundation
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import Synchronization
import Testing

@testable import AnalyticsService

/// Net spend, support counters and RFM (docs/ANALYTICS.md), from events applied to the analytics store
/// exactly as its feed subscriptions apply them, on a real database.
@Suite(.hangLimit) struct AnalyticsRfmTests {
  /// The analytics schema on a fresh database with its pool running, and an event source per feed.
  final class Harness: Sendable {
    let store: AnalyticsStore
    private let sequences = Mutex<[String: Int64]>([:])

    init(store: AnalyticsStore) { self.store = store }

    /// Applies `payloads` as the next events of `source`'s feed, occurring at `at`.
    @discardableResult
    func apply(_ source: String, at: Date = Date(), _ payloads: Rapport_Events_V1_Event.OneOf_Payload...) async throws -> Int {
      try await apply(source, at: at, all: payloads)
    }

    /// Applies `payloads` as one batch of `source`'s feed.
    @discardableResult
    func apply(_ source: String, at: Date = Date(), all payloads: [Rapport_Events_V1_Event.OneOf_Payload]) async throws -> Int {
      try await store.apply(events(source, at, payloads), from: source)
    }

    /// Applies `payloads` as the feed subscription does (reading the customers whose tags or attributes
    /// changed through `profiles`), then recomputes the rule segments of their customers as the service's
    /// `SegmentEvaluator` does next.
    func consume(
      _ source: String, at: Date = Date(), profiles: CustomerProfiles? = nil, _ payloads: Rapport_Events_V1_Event.OneOf_Payload...
    ) async throws {
      let events = events(source, at, payloads)
      try await store.apply(events, from: source, profiles: try await profiles?.profiles(for: events) ?? [:])
      try await store.evaluateAllSegments(customers: AnalyticsStore.customers(of: events))
    }

    /// `payloads` as the next events of `source`'s feed, occurring at `at`.
    private func events(_ source: String, _ at: Date, _ payloads: [Rapport_Events_V1_Event.OneOf_Payload]) -> [Rapport_Events_V1_Event] {
      payloads.map { payload in
        var event = Outbox.event(aggregateType: source, aggregateID: UUID().uuidString, occurredAt: at, payload)
        event.sequence = sequences.withLock { $0[source, default: 0] += 1; return $0[source]! }
        return event
      }
    }

    func metrics(_ customer: UUID) async throws -> Rapport_Analytics_V1_CustomerMetrics {
      try await store.metrics(customerID: customer)
    }
  }

  func withHarness(_ body: (Harness) async throws -> Void) async throws {
    try await Self.withHarness { harness, _ in try await body(harness) }
  }

  /// A fresh database with analytics' schema, no service running on it, and a harness applying events
  /// to it; `body` gets the database too.
  /// With `settings`, the database's sessions start with them (`ALTER DATABASE … SET`).
  static func withHarness(settings: [String: String] = [:], _ body: (Harness, DatabaseURL) async throws -> Void) async throws {
    let database = try await TestDatabase.create()
    for (name, value) in settings.sorted(by: { $0.key < $1.key }) {
      try await Bootstrap.execute(
        "ALTER DATABASE \(database.database) SET \(name) = '\(value)'", on: database.with(database: "postgres"), logger: testLogger("settings"))
    }
    let nowhere = HostPort(host: "127.0.0.1", port: 9)
    let config = testConfig("analytics", database)
    // The service's own migrations (`rapport-analytics migrate`), then a pool of its role for the store.
    try await AnalyticsApp.build(config: config, orderAddress: nowhere, supportAddress: nowhere, logger: testLogger("analytics"))
      .migrate()
    let pool = try ServiceApp.makePostgres(config: config, logger: testLogger("analytics"))
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { await pool.client.run() }
      try await body(Harness(store: AnalyticsStore(client: pool, logger: testLogger("analytics"))), database)
      group.cancelAll()
    }
  }

  /// A running analytics service on a fresh database (its feeds pointed at a port that refuses), and a
  /// harness applying events to its schema as its subscriptions do; `body` gets the service's address.
  /// The sub-hour zones (`sub-hour-time-zones`) are kept only when asked for (tests that keep zones
  /// through the store would race the service's own start).
  static func withService(
    reportTimeZones: [String] = [], subHourTimeZones: Bool = false, _ body: @Sendable (HostPort, Harness, DatabaseURL) async throws -> Void
  ) async throws {
    let database = try await TestDatabase.create()
    let refusing = try SilentListener(listening: false)
    defer { refusing.stop() }
    let closed = HostPort(host: "127.0.0.1", port: refusing.port)
    let config = testConfig("analytics", database)
    let app = try AnalyticsApp.build(
      config: config, customerAddress: closed, orderAddress: closed, supportAddress: closed, reportTimeZones: reportTimeZones,
      subHourTimeZones: subHourTimeZones, logger: testLogger("analytics"))
    try await withRunningService(app) { address in
      let pool = try ServiceApp.makePostgres(config: config, logger: testLogger("events"))
      try await withThrowingDiscardingTaskGroup { group in
        group.addTask { await pool.client.run() }
        try await body(address, Harness(store: AnalyticsStore(client: pool, logger: testLogger("events"))), database)
        group.cancelAll()
      }
    }
  }

  static func placed(_ order: UUID, _ customer: UUID, _ amount: Int64, _ currency: String = "EUR", daysAgo: Double = 0)
    -> Rapport_Events_V1_Event.OneOf_Payload
  {
    .orderPlaced(.with {
      $0.orderID = order.uuidString.lowercased()
      $0.customerID = customer.uuidString.lowercased()
      $0.total = .money(amount, currency)
      // An hour past the whole days, so whole-day recency is exactly `daysAgo`.
      $0.placedAt = .init(microsecondsOf: Date().addingTimeInterval(-daysAgo * 86_400 - 3_600))
    })
  }

  @Test func revenueIsNetOfCancellationsAndRefundsPerCurrency() async throws {
    try await withHarness { harness in
      let customer = UUID(), paid = UUID(), cancelled = UUID(), pounds = UUID()
      try await harness.apply(
        "order", Self.placed(paid, customer, 10_000), Self.placed(cancelled, customer, 5_000),
        Self.placed(pounds, customer, 2_000, "GBP"))
      try await harness.apply(
        "order",
        .orderCancelled(.with {
          $0.orderID = cancelled.uuidString
          $0.customerID = customer.uuidString
        }),
        .orderRefunded(.with {
          $0.orderID = paid.uuidString
          $0.amount = .money(3_000, "EUR")
          $0.amountRefunded = .money(3_000, "EUR")
        }),
        .orderRefunded(.with {
          $0.orderID = paid.uuidString
          $0.amount = .money(1_000, "EUR")
          $0.amountRefunded = .money(4_000, "EUR")
        }))
      let metrics = try await harness.metrics(customer)
      #expect(metrics.orderCount == 3 && metrics.cancelledOrderCount == 1)
      #expect(metrics.revenue.map(\.amountMinor) == [15_000, 2_000])  // gross, as placed
      #expect(metrics.netRevenue == [.money(6_000, "EUR"), .money(2_000, "GBP")])
      #expect(metrics.refunded == [.money(4_000, "EUR"), .money(0, "GBP")])
      #expect(metrics.averageOrderValue == [.money(6_000, "EUR"), .money(2_000, "GBP")])
      // A redelivered refund (an event at or below the cursor) changes nothing.
      var again = Outbox.event(
        aggregateType: "order", aggregateID: paid.uuidString,
        .orderRefunded(.with {
          $0.orderID = paid.uuidString
          $0.amountRefunded = .money(9_000, "EUR")
        }))
      again.sequence = 2
      #expect(try await harness.store.apply([again], from: "order") == 0)
      #expect(try await harness.metrics(customer).netRevenue.first == .money(6_000, "EUR"))
    }
  }

  @Test func rfmScoresByQuintileNameTheSegmentAndMoveWithANewOrder() async throws {
    try await withHarness { harness in
      // Five customers: the i-th has i orders of 10 000 (net 10 000 × i), the last one `lastDays` ago.
      let lastDays: [Double] = [200, 60, 30, 10, 1]
      var customers: [UUID] = []
      for (index, days) in lastDays.enumerated() {
        let customer = UUID()
        customers.append(customer)
        for order in 0...index {
          try await harness.apply("order", Self.placed(UUID(), customer, 10_000, daysAgo: days + Double(index - order)))
        }
      }
      // No edges yet: values are known, scores are not.
      #expect(try await harness.metrics(customers[0]).hasRfm == false)
      try await harness.store.computeRfmEdges()
      let edges = try await harness.store.rfmEdges()
      #expect(edges.population == 5 && edges.monetaryPopulation == ["EUR": 5])
      // percentile_cont over [1, 10, 30, 60, 200] days, [1…5] orders, [10 000 … 50 000] minor units.
      #expect(zip(edges.recency, [8.2, 22, 42, 88]).allSatisfy { abs($0 - $1) < 1e-9 }, "\(edges.recency)")
      #expect(zip(edges.frequency, [1.8, 2.6, 3.4, 4.2]).allSatisfy { abs($0 - $1) < 1e-9 }, "\(edges.frequency)")
      #expect(zip(edges.monetary["EUR"]!, [18_000, 26_000, 34_000, 42_000]).allSatisfy { abs($0 - $1) < 1e-6 })

      let expected: [(Int32, Int32, Int32, Rapport_Analytics_V1_RfmSegment)] = [
        (1, 1, 1, .lost), (2, 2, 2, .hibernating), (3, 3, 3, .needsAttention), (4, 4, 4, .loyal), (5, 5, 5, .champions),
      ]
      for (customer, (r, f, m, segment)) in zip(customers, expected) {
        let rfm = try await harness.metrics(customer).rfm
        #expect(
          (rfm.recencyScore, rfm.frequencyScore, rfm.monetaryScore, rfm.segment) == (r, f, m, segment),
          "\(rfm)")
        #expect(rfm.hasEdgesComputedAt)
      }
      let lost = try await harness.metrics(customers[0]).rfm
      #expect(lost.recencyDays == 200 && lost.frequency == 1 && lost.monetary == .money(10_000, "EUR"))

      // The lost customer orders again, big: scored at once against the same edges (recency 0 → 5,
      // frequency 2 → 2, net 110 000 → 5; mean of F and M 3.5 → 4): a champion.
      try await harness.apply("order", Self.placed(UUID(), customers[0], 100_000))
      let back = try await harness.metrics(customers[0]).rfm
      #expect((back.recencyScore, back.frequencyScore, back.monetaryScore, back.segment) == (5, 2, 5, .champions))

      // Scored all at once (for top products per segment), every customer lands where `rfm` put them.
      let sorted = { (ids: [UUID]) in ids.sorted { $0.uuidString.lowercased() < $1.uuidString.lowercased() } }
      #expect(try await harness.store.customers(in: .champions) == sorted([customers[0], customers[4]]))
      for (customer, (_, _, _, segment)) in zip(customers, expected).dropFirst().dropLast() {
        #expect(try await harness.store.customers(in: segment) == [customer], "\(segment)")
      }
      #expect(try await harness.store.customers(in: .lost) == [])
      // Top products of one segment: the champions' lines only.
      try await harness.apply(
        "order",
        AnalyticsSalesTests.placed(UUID(), customers[4], at: "2026-03-01T10:00:00Z", lines: [("TEA", 2, 3_000)]),
        AnalyticsSalesTests.placed(UUID(), customers[1], at: "2026-03-01T10:00:00Z", lines: [("MUG", 9, 4_000)]))
      let range = AnalyticsStore.SalesRange(
        from: AnalyticsSalesTests.at("2026-01-01T00:00:00Z"), to: AnalyticsSalesTests.at("2026-06-01T00:00:00Z"), currency: "EUR",
        channel: 0)
      let all = try await harness.store.topProducts(range, limit: 10)
      #expect(all.map(\.sku) == ["MUG", "TEA"])
      let champions = try await harness.store.topProducts(range, limit: 10, customers: try await harness.store.customers(in: .champions))
      #expect(champions.map(\.sku) == ["TEA"] && champions[0].quantity == 2)
    }
  }

  @Test func aMergeMovesOrdersAndSupportCountersToTheSurvivor() async throws {
    try await withHarness { harness in
      let survivor = UUID(), duplicate = UUID()
      try await harness.apply("order", Self.placed(UUID(), survivor, 1_000), Self.placed(UUID(), duplicate, 2_000))
      let ticket = UUID().uuidString
      try await harness.apply(
        "support",
        .ticketOpened(.with {
          $0.ticketID = ticket
          $0.customerID = duplicate.uuidString
        }),
        .slaBreached(.with {
          $0.ticketID = ticket
          $0.customerID = duplicate.uuidString
        }),
        .ticketRated(.with {
          $0.ticketID = ticket
          $0.customerID = duplicate.uuidString
          $0.rating = 4
        }),
        .ticketRated(.with {
          $0.ticketID = UUID().uuidString
          $0.customerID = survivor.uuidString
          $0.rating = 5
        }))
      try await harness.apply(
        "customer",
        .customerMerged(.with {
          $0.survivorID = survivor.uuidString
          $0.duplicateID = duplicate.uuidString
        }))
      let merged = try await harness.metrics(survivor)
      #expect(merged.netRevenue == [.money(3_000, "EUR")] && merged.orderCount == 2)
      #expect(merged.ticketsOpened == 1 && merged.slaBreaches == 1 && merged.ratingCount == 2 && merged.averageRating == 4.5)
      // An order of the duplicate that was still in flight lands on the survivor.
      try await harness.apply("order", Self.placed(UUID(), duplicate, 500))
      #expect(try await harness.metrics(survivor).netRevenue == [.money(3_500, "EUR")])
      #expect(try await harness.metrics(duplicate).netRevenue.isEmpty)
    }
  }

  @Test func roundingAndTheSegmentGrid() {
    #expect(AnalyticsStore.roundedDivision(5, 2) == 3 && AnalyticsStore.roundedDivision(7, 3) == 2)
    #expect(AnalyticsStore.roundedDivision(-5, 2) == -3)
    #expect(AnalyticsStore.meanScore(3, 4) == 4 && AnalyticsStore.meanScore(2, 2) == 2)
    // Every cell has a segment, and each of the ten segments has at least one cell.
    let cells = (1...5).flatMap { r in (1...5).map { AnalyticsStore.segment(recency: r, frequencyMonetary: $0) } }
    #expect(Set(cells).count == 10 && !cells.contains(.unspecified))
  }
}
