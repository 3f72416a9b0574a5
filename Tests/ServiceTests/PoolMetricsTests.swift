import CustomerService
import Foundation
import PostgresNIO
import RapportCore
import RapportTesting
import Testing

/// The database pool's connections reach the service's metrics, by state, as PostgreSQL reports them
/// for this process's `application_name`.
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
      try await pool.withTransaction(logger: testLogger("customer")) { connection in
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

  @Test func aLeaseThatWaitsForAnExhaustedPoolShowsItsWait() async throws {
    let database = try await TestDatabase.create()
    let app = try CustomerApp.build(config: testConfig("customer", database), logger: testLogger("customer"))
    let pool = try #require(app.postgres)
    try await withRunningService(app) { _ in
      try await eventually(within: .seconds(15), "a first pass") { wait(app) != nil }
      // testConfig's pool has 4 connections: hold all of them for 12 s. A pass comes every 5 s, so one
      // starts while they are held and waits at least 12 − 5 = 7 s (an idle pool's lease takes
      // milliseconds, even on a loaded machine far less than 5 s).
      try await withThrowingDiscardingTaskGroup { group in
        for _ in 0..<4 {
          group.addTask { try await pool.withConnection { _ in try await Task.sleep(for: .seconds(12)) } }
        }
        try await eventually(within: .seconds(40), "the pass's lease waited for the held connections") {
          (wait(app) ?? 0) >= 5
        }
      }
    }
  }

  /// `rapport_db_lease_wait_seconds` as the metrics endpoint renders it.
  private func wait(_ app: ServiceApp) -> Double? {
    let prefix = "rapport_db_lease_wait_seconds "
    let line = app.metrics.text().split(separator: "\n").first { $0.hasPrefix(prefix) }
    return line.flatMap { Double($0.dropFirst(prefix.count)) }
  }

  /// `rapport_db_connections{state=…}` as the metrics endpoint renders it.
  private func gauge(_ app: ServiceApp, _ state: String) -> Int? {
    let prefix = "rapport_db_connections{state=\"\(state)\"} "
    let line = app.metrics.text().split(separator: "\n").first { $0.hasPrefix(prefix) }
    return line.flatMap { Double($0.dropFirst(prefix.count)) }.map { Int($0) }
  }
}
