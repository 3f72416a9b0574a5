import CustomerService
import Foundation
import PostgresNIO
import RapportCore
import RapportTesting
import Testing

/// The database pool's connections reach the service's metrics: by state, as PostgreSQL reports them for
/// this process's `application_name`, and the requests waiting for one, as the process counts them.
struct PoolMetricsTests {
  @Test func aConnectionHeldInATransactionShowsAsInUseUntilItIsReleased() async throws {
    let database = try await TestDatabase.create()
    let app = try CustomerApp.build(config: testConfig("customer", database), logger: testLogger("customer"))
    let pool = try #require(app.postgres)
    try await withRunningService(app) { _ in
      // The outbox LISTEN connection is always open, idle between notifications.
      try await eventually(within: .seconds(15), "the pool reports its open connections") {
        (gauge(app, "idle") ?? 0) + (gauge(app, "active") ?? 0) >= 1
      }
      try await pool.transaction(logger: testLogger("customer")) { connection in
        _ = try await connection.query("SELECT 1", logger: testLogger("customer"))
        try await eventually(within: .seconds(15), "the held connection shows idle in transaction") {
          gauge(app, "idle_in_transaction") == 1
        }
      }
      try await eventually(within: .seconds(15), "the released connection is no longer in a transaction") {
        gauge(app, "idle_in_transaction") == 0
      }
    }
  }

  /// On a pool of its own (nothing else leases from it), so every count is exact.
  @Test func requestsWaitingForAnExhaustedPoolAreCountedAndTheirWaitIsTimed() async throws {
    let database = try await TestDatabase.create()
    let logger = testLogger("customer")
    let pool = try ServiceApp.makePostgres(config: testConfig("customer", database), logger: logger)
    let metrics = RPCMetrics()
    metrics.export(pool.queue)
    #expect(value(metrics, "rapport_db_lease_requests_waiting{pool=\"main\"}") == 0)
    #expect(value(metrics, "rapport_db_leases_total{pool=\"main\"}") == 0)
    try await withThrowingDiscardingTaskGroup { running in
      running.addTask { await pool.client.run() }
      // testConfig's pool has 4 connections: hold all of them for `held`, then ask for 3 more.
      let held = Duration.seconds(4)
      let holdersAsked = ContinuousClock.now
      let waitersSeen = try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<4 { group.addTask { try await pool.withConnection { _ in try await Task.sleep(for: held) } } }
        try await eventually(within: .seconds(10), "the holders have every connection") { pool.queue.granted == 4 }
        for _ in 0..<3 { group.addTask { try await pool.query("SELECT 1", logger: logger) } }
        try await eventually(within: .seconds(3), "the three requests are counted as waiting") {
          value(metrics, "rapport_db_lease_requests_waiting{pool=\"main\"}") == 3
        }
        let waitersSeen = ContinuousClock.now
        try await group.waitForAll()
        return waitersSeen
      }
      #expect(value(metrics, "rapport_db_lease_requests_waiting{pool=\"main\"}") == 0)
      #expect(value(metrics, "rapport_db_leases_total{pool=\"main\"}") == 7)
      // The three asked before `waitersSeen` and got a connection no earlier than `held` after the holders
      // asked for theirs.
      let waitedAtLeast = held - (waitersSeen - holdersAsked)
      let waited = try #require(value(metrics, "rapport_db_lease_wait_seconds_total{pool=\"main\"}"))
      #expect(waited >= 3 * (waitedAtLeast / .seconds(1)), "waited \(waited) s in total")
      running.cancelAll()
    }
  }

  /// One sample as the metrics endpoint renders it, by its full name with labels.
  private func value(_ metrics: RPCMetrics, _ sample: String) -> Double? {
    let line = metrics.text().split(separator: "\n").first { $0.hasPrefix(sample + " ") }
    return line.flatMap { Double($0.dropFirst(sample.count + 1)) }
  }

  /// One sample as the metrics endpoint renders it, by its full name with labels.
  private func value(_ app: ServiceApp, _ sample: String) -> Double? {
    let line = app.metrics.text().split(separator: "\n").first { $0.hasPrefix(sample + " ") }
    return line.flatMap { Double($0.dropFirst(sample.count + 1)) }
  }

  /// `rapport_db_connections{state=…}` as the metrics endpoint renders it.
  private func gauge(_ app: ServiceApp, _ state: String) -> Int? {
    let prefix = "rapport_db_connections{state=\"\(state)\"} "
    let line = app.metrics.text().split(separator: "\n").first { $0.hasPrefix(prefix) }
    return line.flatMap { Double($0.dropFirst(prefix.count)) }.map { Int($0) }
  }
}
