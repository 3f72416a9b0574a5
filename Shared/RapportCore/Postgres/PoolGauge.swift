import Foundation
import Logging
import PostgresNIO

/// The process's database connections as PostgreSQL sees them, every 5 s:
/// `rapport_db_connections{state}` with `state` one of `active` (running a statement), `idle_in_transaction`
/// (leased, between statements), `idle` (open in the pool, not leased) — their sum is the pool's open
/// connections.
///
/// Why from `pg_stat_activity`: postgres-nio 1.33.2 builds its pool's observability delegate itself, and
/// the lease/release and queue-depth callbacks of that delegate are empty. Each process tags its
/// connections with its own `application_name` (`applicationName(for:)`), so replicas sharing a role are
/// counted apart. The requests waiting for a connection are counted by the process itself, on every
/// lease (`Database`, `LeaseQueue`). The pass's own query shows as one `active` connection.
public enum PoolGauge {
  /// `rapport-<service>@<host name>#<pid>` (in Kubernetes the host name is the pod's), cut to
  /// PostgreSQL's 63 bytes.
  public static func applicationName(for service: String) -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    let host = gethostname(&buffer, buffer.count - 1) == 0 ? String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "unknown"
    return String("rapport-\(service)@\(host)#\(getpid())".utf8.prefix(63)) ?? "rapport-\(service)"
  }

  static let states = ["active", "idle_in_transaction", "idle"]

  public static func periodic(_ postgres: Database, applicationName: String, logger: Logger) -> Periodic {
    Periodic("pool gauge", every: .seconds(5), logger: logger) {
      guard let metrics = RPCMetrics.current else { return }
      let counts = try await postgres.withConnection { connection in
        let rows = try await connection.query(
          """
          SELECT replace(coalesce(state, ''), ' ', '_'), count(*)::bigint FROM pg_stat_activity
          WHERE application_name = \(applicationName) AND usename = current_user AND datname = current_database()
          GROUP BY 1
          """, logger: logger)
        var counts = Dictionary(uniqueKeysWithValues: states.map { ($0, 0) })
        for try await (state, count) in rows.decode((String, Int).self) where counts[state] != nil {
          counts[state] = count
        }
        return counts
      }
      for (state, count) in counts { metrics.gauge("rapport_db_connections", [("state", state)]).record(count) }
    }
  }
}
