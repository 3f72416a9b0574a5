import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportLocal

/// One throwaway PostgreSQL cluster per test process, started on first use and stopped at exit. Each
/// test gets its own database, cloned from a template that already holds `deploy/sql/bootstrap.sql`,
/// so tests run in parallel without seeing each other's rows.
public enum TestDatabase {
  static let logger = Logger(label: "rapport-test-db")

  /// The suite runs ~30 tests at once, each with two to five services holding pools, LISTEN connections
  /// and probes: 376 connections were seen at peak. At the old limit of 400 a refused connection failed a
  /// test now and then (or stopped a service during start-up); 1000 leaves room to grow.
  private static let cluster: Task<LocalPostgres, any Error> = Task {
    let directory = "/tmp/rapport-test-\(getpid())"
    cleanUpStaleClusters()
    let postgres = try await Shell.onOwnThread { try LocalPostgres.start(directory: directory, ephemeral: true, maxConnections: 1000) }
    clusterDirectory = directory
    atexit {
      if let directory = clusterDirectory {
        try? LocalPostgres(directory: directory, port: 0).stop(mode: "immediate")
        try? FileManager.default.removeItem(atPath: directory)
      }
    }
    try await Bootstrap.prepare(database: "rapport_template", server: postgres.adminURL, logger: logger)
    return postgres
  }

  nonisolated(unsafe) private static var clusterDirectory: String?

  /// A new, empty database with every service's schema and role; returns its superuser URL.
  public static func create() async throws -> DatabaseURL {
    let postgres = try await cluster.value
    let name = "t_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
    try await Bootstrap.execute(
      "CREATE DATABASE \(name) TEMPLATE rapport_template", on: postgres.adminURL, logger: logger)
    return postgres.adminURL.with(database: name)
  }

  /// Stops clusters left behind by test processes that were killed.
  private static func cleanUpStaleClusters() {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []
    for entry in entries where entry.hasPrefix("rapport-test-") {
      guard let pid = Int32(entry.dropFirst("rapport-test-".count)), kill(pid, 0) != 0 || ChildProcess.exited(pid) else { continue }
      try? LocalPostgres(directory: "/tmp/\(entry)", port: 0).stop(mode: "immediate")
      try? FileManager.default.removeItem(atPath: "/tmp/\(entry)")
    }
  }
}


extension TestDatabase {
  /// Runs a query as the superuser and returns the single integer it selects (row counts in tests).
  public static func scalar(_ sql: String, on url: DatabaseURL) async throws -> Int {
    guard let value = try await column(sql, as: Int.self, on: url).first else { throw TestFailure("no row from \(sql)") }
    return value
  }

  /// The first column of every row of `sql`, run as the superuser.
  public static func column<Value: PostgresDecodable & Sendable>(
    _ sql: String, as type: Value.Type = String.self, on url: DatabaseURL
  ) async throws -> [Value] {
    let connection = try await PostgresConnection.connect(
      configuration: .init(host: url.host, port: url.port, username: url.user, password: url.password, database: url.database, tls: .disable),
      id: 1, logger: logger)
    defer { Task { try? await connection.close() } }
    let rows = try await connection.query("\(unescaped: sql)", logger: logger)
    var values: [Value] = []
    for try await value in rows.decode(Value.self) { values.append(value) }
    return values
  }
}

extension TestDatabase {
  /// Makes a test database unreachable as a stopped server would be: new connections are refused and the
  /// open ones are terminated.
  public static func cutOff(_ url: DatabaseURL) async throws {
    let admin = url.with(database: "postgres")
    try await Bootstrap.execute("ALTER DATABASE \(url.database) ALLOW_CONNECTIONS false", on: admin, logger: logger)
    _ = try await column(
      "SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity WHERE datname = '\(url.database)'", on: admin)
  }
}
