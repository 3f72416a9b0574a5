import RapportCore
import Foundation
import Logging
import PostgresNIO

/// Applies `deploy/sql/bootstrap.sql` (schemas and login roles, one per service) as a superuser: the
/// same file operators run, `rapport up` runs and the tests run.
public enum Bootstrap {
  /// The service roles the bootstrap file creates, keyed by service name.
  public static let roles: [String: String] = [
    "customer": "rapport_customer", "order": "rapport_order", "support": "rapport_support",
    "analytics": "rapport_analytics", "gateway": "rapport_gateway",
  ]

  /// Finds the bootstrap SQL: `$RAPPORT_BOOTSTRAP_SQL`, `./deploy/sql/bootstrap.sql`, or the checkout this
  /// binary was built from.
  public static func sqlFile() throws -> String {
    var candidates = ["deploy/sql/bootstrap.sql"]
    if let explicit = ProcessInfo.processInfo.environment["RAPPORT_BOOTSTRAP_SQL"] { candidates.insert(explicit, at: 0) }
    let checkout = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().deletingLastPathComponent()
    candidates.append(checkout.appendingPathComponent("deploy/sql/bootstrap.sql").path)
    for candidate in candidates where FileManager.default.fileExists(atPath: candidate) { return candidate }
    throw ShellError(description: "deploy/sql/bootstrap.sql not found; set RAPPORT_BOOTSTRAP_SQL")
  }

  /// Runs one SQL statement on `url` (e.g. CREATE DATABASE, which cannot run in a transaction).
  public static func execute(_ sql: String, on url: DatabaseURL, logger: Logger) async throws {
    let connection = try await PostgresConnection.connect(
      configuration: .init(
        host: url.host, port: url.port, username: url.user, password: url.password, database: url.database,
        tls: .disable),
      id: 1, logger: logger)
    do {
      _ = try await connection.query("\(unescaped: sql)", logger: logger)
      try await connection.close()
    } catch {
      try? await connection.close()
      throw error
    }
  }

  /// Applies a SQL file with psql (it holds a DO block and several statements), stopping at the first error.
  public static func apply(file: String, on url: DatabaseURL) async throws {
    try await Shell.run(
      try LocalPostgres.binary("psql"),
      ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", file, "--dbname=\(url.urlString)"])
  }

  /// Creates `database` if missing and applies the bootstrap file to it.
  public static func prepare(database: String, server: DatabaseURL, logger: Logger) async throws {
    precondition(Migrator.isIdentifier(database))
    let admin = server.with(database: "postgres")
    let connection = try await PostgresConnection.connect(
      configuration: .init(
        host: admin.host, port: admin.port, username: admin.user, password: admin.password,
        database: admin.database, tls: .disable),
      id: 1, logger: logger)
    let rows = try await connection.query("SELECT count(*) FROM pg_database WHERE datname = \(database)", logger: logger)
    var exists = false
    for try await count in rows.decode(Int.self) { exists = count > 0 }
    if !exists { _ = try await connection.query("CREATE DATABASE \(unescaped: database)", logger: logger) }
    try await connection.close()
    try await apply(file: try sqlFile(), on: server.with(database: database))
  }
}

extension DatabaseURL {
  /// The URL a service uses: the same server and database as its own login role (see `Bootstrap.roles`).
  public func role(of service: String) -> DatabaseURL {
    with(user: Bootstrap.roles[service] ?? service)
  }
}
