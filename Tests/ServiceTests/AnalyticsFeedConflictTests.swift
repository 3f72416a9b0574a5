import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos
import RapportTesting
import Testing

@testable import AnalyticsService

/// A consumer's batch that loses a race with another writer of its rows runs again.
@Suite(.hangLimit) struct AnalyticsFeedConflictTests {
  /// A batch of cancellations locks its orders in id order; another writer (as a scoring pass writes
  /// orders) holds the second and then asks for the first. PostgreSQL ends the cycle by failing the
  /// batch's transaction as a deadlock; the batch runs again once the other writer is done, and takes
  /// effect once.
  @Test func aBatchThatDeadlocksWithAnotherWriterRunsAgainAndTakesEffectOnce() async throws {
    // PostgreSQL looks for a deadlock once, when a wait has lasted deadlock_timeout. The batch waits
    // first: it must look after the cycle has formed, or the other writer (looking after 60 s) is the
    // one that fails. At the default 1 s a loaded machine formed the cycle too late (CI at fcddcbd).
    try await AnalyticsRfmTests.withHarness(settings: ["deadlock_timeout": "10s"]) { events, database in
      let customer = UUID()
      let (first, second) = {
        let pair = [UUID(), UUID()].sorted { $0.uuidString < $1.uuidString }
        return (pair[0], pair[1])
      }()
      try await events.apply(
        "order",
        all: [first, second].map { id in
          .orderPlaced(.with {
            $0.orderID = id.uuidString
            $0.customerID = customer.uuidString
            $0.placedAt = .init(date: Date().addingTimeInterval(-86_400))
            $0.channel = .web
            $0.total = .money(1_000, "EUR")
            $0.lines = [.with { $0.sku = "TEA"; $0.quantity = 1; $0.unitPriceMinor = 1_000 }]
          })
        })
      let logger = Logger(label: "rapport-test-writer")
      let other = try await PostgresConnection.connect(
        configuration: .init(
          host: database.host, port: database.port, username: database.user, password: database.password,
          database: database.database, tls: .disable),
        id: 2, logger: logger)
      defer { Task { try? await other.close() } }
      // The other writer waits long before it looks for a deadlock, so the batch's transaction (which
      // waited first and looks after 10 s) is the one that fails.
      try await other.query("SET deadlock_timeout = '60s'", logger: logger)
      try await other.query("BEGIN", logger: logger)
      try await other.query("UPDATE analytics.orders SET rfm_segment = rfm_segment WHERE order_id = \(second)", logger: logger)
      let applied = Task {
        try await events.apply("order", all: [first, second].map { id in .orderCancelled(.with { $0.orderID = id.uuidString }) })
      }
      // The batch holds the first order and waits for the second.
      var waiting = 0
      for _ in 0..<100 where waiting == 0 {
        try await Task.sleep(for: .milliseconds(50))
        waiting = try await TestDatabase.scalar(
          "SELECT count(*)::int8 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
          on: database)
      }
      #expect(waiting == 1)
      try await other.query("UPDATE analytics.orders SET rfm_segment = rfm_segment WHERE order_id = \(first)", logger: logger)
      try await other.query("COMMIT", logger: logger)
      #expect(try await applied.value == 2)
      #expect(try await TestDatabase.scalar("SELECT count(*)::int8 FROM analytics.orders WHERE cancelled", on: database) == 2)
      #expect(try await TestDatabase.scalar("SELECT last_sequence FROM analytics.feed_cursors WHERE source = 'order'", on: database) == 4)
      // The first attempt did fail as a deadlock (the statistics reach the view within a second or so).
      var deadlocks = 0
      for _ in 0..<50 where deadlocks == 0 {
        deadlocks = try await TestDatabase.scalar(
          "SELECT deadlocks::int8 FROM pg_stat_database WHERE datname = current_database()", on: database)
        if deadlocks == 0 { try await Task.sleep(for: .milliseconds(100)) }
      }
      #expect(deadlocks == 1)
      // Net revenue: both orders cancelled, nothing left.
      let metrics = try await events.store.metrics(customerID: customer)
      #expect(metrics.cancelledOrderCount == 2)
      #expect(metrics.netRevenue.allSatisfy { $0.amountMinor == 0 })
    }
  }
}
