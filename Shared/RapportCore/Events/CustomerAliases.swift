import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import PostgresNIO
import RapportProtos

/// A consumer's `<schema>.customer_aliases`: which customer ids were merged into which survivor, learnt
/// from `CustomerMerged`. Rows written later for a merged id (an order confirmed just before the merge,
/// an event from another feed that was still in flight) are stored under the survivor instead.
public struct CustomerAliases: Sendable {
  public let schema: String

  public init(schema: String) {
    precondition(Migrator.isIdentifier(schema))
    self.schema = schema
  }

  public var migrationStatements: [String] {
    [
      """
      CREATE TABLE \(schema).customer_aliases (
        duplicate_id uuid PRIMARY KEY,
        survivor_id uuid NOT NULL,
        merged_at timestamptz NOT NULL)
      """,
      "CREATE INDEX customer_aliases_survivor ON \(schema).customer_aliases (survivor_id)",
    ]
  }

  /// Records a merge; aliases that pointed at the duplicate now point at the survivor. Returns the
  /// (survivor, duplicate) ids, or nil for a malformed event.
  @discardableResult
  public func record(
    _ merge: Rapport_Events_V1_CustomerMerged, at time: Date, on connection: PostgresConnection, logger: Logger
  ) async throws -> (survivor: UUID, duplicate: UUID)? {
    guard let survivor = UUID(uuidString: merge.survivorID), let duplicate = UUID(uuidString: merge.duplicateID) else {
      logger.error("CustomerMerged with malformed ids ignored", metadata: ["survivor": "\(merge.survivorID)"])
      return nil
    }
    try await connection.query(
      """
      INSERT INTO \(unescaped: schema).customer_aliases (duplicate_id, survivor_id, merged_at)
      VALUES (\(duplicate), \(survivor), \(time)) ON CONFLICT (duplicate_id) DO NOTHING
      """, logger: logger)
    try await connection.query(
      "UPDATE \(unescaped: schema).customer_aliases SET survivor_id = \(survivor) WHERE survivor_id = \(duplicate)",
      logger: logger)
    return (survivor, duplicate)
  }

  /// The id under which to store rows of `id`: its survivor when it was merged, else itself.
  public func canonical(_ id: UUID, on connection: PostgresConnection, logger: Logger) async throws -> UUID {
    let rows = try await connection.query(
      "SELECT survivor_id FROM \(unescaped: schema).customer_aliases WHERE duplicate_id = \(id)", logger: logger)
    for try await survivor in rows.decode(UUID.self) { return survivor }
    return id
  }
}

extension EventSubscription {
  /// A subscription whose cursor lives in `cursors` and whose `effect` runs in the same transaction as
  /// the cursor update, so each event takes effect exactly once.
  public static func stored(
    source: String, client: GRPCClient<HTTP2ClientTransport.Posix>, types: [String], cursors: FeedCursors,
    postgres: Database, logger: Logger,
    effect: @escaping @Sendable (Rapport_Events_V1_Event, PostgresConnection) async throws -> Void
  ) -> EventSubscription {
    EventSubscription(
      source: source, client: client, types: types, logger: logger,
      cursor: { try await cursors.cursor(source: source, client: postgres, logger: logger) },
      apply: { batch in
        try await cursors.apply(batch, from: source, client: postgres, logger: logger, effect: effect)
      })
  }
}

extension EventSubscription {
  /// The customer feed's `CustomerMerged` and `CustomerErased`, as every service holding rows per
  /// customer consumes them; the cursor is kept in `schema`'s `feed_cursors`.
  public static func customerLifecycle(
    client: GRPCClient<HTTP2ClientTransport.Posix>, schema: String, postgres: Database, logger: Logger,
    effect: @escaping @Sendable (Rapport_Events_V1_Event, PostgresConnection) async throws -> Void
  ) -> EventSubscription {
    .stored(
      source: "customer", client: client, types: [Rapport_Events_V1_CustomerMerged.eventType, Rapport_Events_V1_CustomerErased.eventType],
      cursors: FeedCursors(schema: schema), postgres: postgres, logger: logger, effect: effect)
  }
}
