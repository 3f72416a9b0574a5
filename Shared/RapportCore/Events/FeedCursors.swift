import Logging
import PostgresNIO
import RapportProtos

/// A consumer's `<schema>.feed_cursors` table: the last sequence applied from each source feed, advanced
/// in the same transaction as each event's effect so an effect is applied exactly once.
public struct FeedCursors: Sendable {
  public let schema: String

  public init(schema: String) {
    precondition(Migrator.isIdentifier(schema))
    self.schema = schema
  }

  /// The statement that creates the table; include it in a migration.
  public var migrationStatements: [String] {
    [
      """
      CREATE TABLE \(schema).feed_cursors (
        source text PRIMARY KEY,
        last_sequence bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now())
      """
    ]
  }

  /// The last sequence applied from `source` (0 before the first event).
  public func cursor(source: String, client: Database, logger: Logger) async throws -> Int64 {
    let rows = try await client.query(
      "SELECT last_sequence FROM \(unescaped: schema).feed_cursors WHERE source = \(source)", logger: logger)
    for try await sequence in rows.decode(Int64.self) { return sequence }
    return 0
  }

  /// Runs `effect` for each event of `batch` above the stored cursor and advances the cursor to the last
  /// one, in one transaction. Events at or below the cursor (redeliveries) change nothing. Returns how
  /// many events took effect.
  ///
  /// A transaction that fails as a deadlock or a serialization failure runs again (up to three more
  /// times, `Database.retryingTransaction`), so `effect` must act only through the connection.
  ///
  /// The transaction commits with `synchronous_commit = off`: it holds only state derived from the
  /// source feed together with the cursor, so a commit lost in a crash before its WAL reached disk
  /// loses both at once, and the events are simply applied again from the (durable) source. Producers
  /// keep synchronous commits.
  @discardableResult
  public func apply(
    _ batch: [Rapport_Events_V1_Event], from source: String, client: Database, logger: Logger,
    effect: (Rapport_Events_V1_Event, PostgresConnection) async throws -> Void
  ) async throws -> Int {
    try await apply(batch, from: source, client: client, logger: logger) { events, connection in
      for event in events { try await effect(event, connection) }
    }
  }

  /// `apply` with an effect that takes every new event of the batch at once (in sequence order), for
  /// consumers that apply a batch with set-based statements.
  @discardableResult
  public func apply(
    _ batch: [Rapport_Events_V1_Event], from source: String, client: Database, logger: Logger,
    effects: ([Rapport_Events_V1_Event], PostgresConnection) async throws -> Void
  ) async throws -> Int {
    guard !batch.isEmpty else { return 0 }
    // A deadlock with another writer of the consumer's rows (a scoring pass, say) runs the batch again.
    return try await client.retryingTransaction(logger: logger) { connection in
      try await connection.query("SET LOCAL synchronous_commit = off", logger: logger)
      try await connection.query(
        """
        INSERT INTO \(unescaped: schema).feed_cursors (source, last_sequence) VALUES (\(source), 0)
        ON CONFLICT DO NOTHING
        """, logger: logger)
      let rows = try await connection.query(
        "SELECT last_sequence FROM \(unescaped: schema).feed_cursors WHERE source = \(source) FOR UPDATE",
        logger: logger)
      var stored: Int64 = 0
      for try await sequence in rows.decode(Int64.self) { stored = sequence }
      var last = stored
      let fresh = batch.filter { event in
        guard event.sequence > last else { return false }
        last = event.sequence
        return true
      }
      guard !fresh.isEmpty else { return 0 }
      try await effects(fresh, connection)
      try await connection.query(
        """
        UPDATE \(unescaped: schema).feed_cursors SET last_sequence = \(last), updated_at = now()
        WHERE source = \(source)
        """, logger: logger)
      return fresh.count
    }
  }
}
