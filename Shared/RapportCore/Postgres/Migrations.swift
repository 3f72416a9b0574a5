import Logging
import PostgresNIO

/// One schema change of one service. Statements run in order, in one transaction.
public struct Migration: Sendable {
  public let version: Int
  public let name: String
  public let statements: [String]

  public init(_ version: Int, _ name: String, _ statements: [String]) {
    self.version = version
    self.name = name
    self.statements = statements
  }
}

/// Applies a service's migrations inside its own schema, recording them in `<schema>.schema_migrations`.
/// Replicas starting together serialise on an advisory lock, so each migration runs once.
public struct Migrator: Sendable {
  public let schema: String
  public let migrations: [Migration]

  public init(schema: String, migrations: [Migration]) {
    precondition(Self.isIdentifier(schema), "schema must be a plain identifier")
    self.schema = schema
    self.migrations = migrations.sorted { $0.version < $1.version }
  }

  /// Applies every migration not yet recorded; returns how many ran.
  @discardableResult
  public func apply(on client: Database, logger: Logger) async throws -> Int {
    try await client.transaction(logger: logger) { connection in
      _ = try await connection.query("SELECT pg_advisory_xact_lock(\(Self.lockKey(schema)))", logger: logger)
      _ = try await connection.query(
        PostgresQuery(
          unsafeSQL: """
            CREATE TABLE IF NOT EXISTS \(schema).schema_migrations (
              version integer PRIMARY KEY, name text NOT NULL,
              applied_at timestamptz NOT NULL DEFAULT now())
            """), logger: logger)
      var applied = Set<Int>()
      let rows = try await connection.query("SELECT version FROM \(unescaped: schema).schema_migrations", logger: logger)
      for try await version in rows.decode(Int.self) { applied.insert(version) }
      var count = 0
      for migration in migrations where !applied.contains(migration.version) {
        for statement in migration.statements {
          _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
        }
        _ = try await connection.query(
          "INSERT INTO \(unescaped: schema).schema_migrations (version, name) VALUES (\(migration.version), \(migration.name))",
          logger: logger)
        logger.info("applied migration", metadata: ["schema": "\(schema)", "version": "\(migration.version)"])
        count += 1
      }
      return count
    }
  }

  /// A stable 64-bit advisory-lock key for a schema-wide critical section.
  public static func lockKey(_ name: String) -> Int64 {
    // FNV-1a: stable across processes and releases, unlike Hasher.
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    for byte in name.utf8 {
      hash ^= UInt64(byte)
      hash = hash &* 0x100_0000_01b3
    }
    return Int64(bitPattern: hash)
  }

  /// True for lower-case SQL identifiers that need no quoting.
  public static func isIdentifier(_ name: String) -> Bool {
    guard let first = name.unicodeScalars.first, ("a"..."z").contains(first) else { return false }
    return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
  }
}
