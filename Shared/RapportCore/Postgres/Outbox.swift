import Foundation
import Logging
import PostgresNIO
import RapportProtos
import SwiftProtobuf

/// A service's transactional outbox: `<schema>.outbox`, with Debezium outbox-router columns (`id`,
/// `aggregate_type`, `aggregate_id`, `type`, `payload`) plus a monotonic `sequence` and `occurred_at`.
///
/// Writers append inside the transaction that makes the change. Appends take a schema-wide advisory lock
/// held to commit, so sequence order is commit order and a reader that has seen sequence N can never
/// later find a committed event below N. The cost is that outbox-writing transactions commit one at a
/// time (see docs/ARCHITECTURE.md).
public struct Outbox: Sendable {
  /// Every 5 s, exports `rapport_outbox_head_sequence` (the newest event's sequence; 0 when none), so
  /// that a consumer's backlog is this minus its `rapport_feed_cursor_sequence{source}`.
  public func headGauge(_ postgres: Database, logger: Logger) -> Periodic {
    let schema = self.schema
    return Periodic("outbox head", every: .seconds(5), logger: logger) {
      let gauge = RPCMetrics.current?.gauge("rapport_outbox_head_sequence", [])
      let rows = try await postgres.query(
        "SELECT coalesce(max(sequence), 0) FROM \(unescaped: schema).outbox", logger: logger)
      for try await head in rows.decode(Int64.self) { gauge?.record(head) }
    }
  }

  public let schema: String
  /// The LISTEN/NOTIFY channel woken on every append.
  public var channel: String { "\(schema)_outbox" }

  public init(schema: String) {
    precondition(Migrator.isIdentifier(schema))
    self.schema = schema
  }

  /// The statements that create the outbox; include them in the service's first migration.
  public var migrationStatements: [String] {
    [
      """
      CREATE TABLE \(schema).outbox (
        id uuid PRIMARY KEY,
        sequence bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
        aggregate_type text NOT NULL,
        aggregate_id text NOT NULL,
        type text NOT NULL,
        payload bytea NOT NULL,
        occurred_at timestamptz NOT NULL)
      """,
      "CREATE INDEX outbox_type_sequence ON \(schema).outbox (type, sequence)",
    ]
  }

  /// Builds an event envelope with a fresh id, the payload's type name and the current time.
  public static func event(
    aggregateType: String, aggregateID: String, occurredAt: Date = Date(),
    _ payload: Rapport_Events_V1_Event.OneOf_Payload
  ) -> Rapport_Events_V1_Event {
    var event = Rapport_Events_V1_Event()
    event.id = UUID().uuidString.lowercased()
    event.aggregateType = aggregateType
    event.aggregateID = aggregateID
    event.type = payload.typeName
    event.occurredAt = Google_Protobuf_Timestamp(microsecondsOf: occurredAt)
    event.payload = payload
    event.traceparent = RapportTracing.currentTraceParent()
    return event
  }

  /// Appends `event` in the caller's transaction and returns its sequence number.
  @discardableResult
  public func append(
    _ event: Rapport_Events_V1_Event, on connection: PostgresConnection, logger: Logger
  ) async throws -> Int64 {
    let events = try Rows([event])
    let rows = try await connection.query(
      """
      WITH lock AS (SELECT pg_advisory_xact_lock(\(lockKey)::int8))
      \(insert: self, events, after: "lock")
      RETURNING sequence, pg_notify(\(channel)::text, '')::text
      """, logger: logger)
    for try await (sequence, _) in rows.decode((Int64, String?).self) { return sequence }
    throw RPCFailure.internal("outbox append returned no row")
  }

  /// Appends many events in the caller's transaction with one statement (bulk imports).
  public func append(contentsOf events: [Rapport_Events_V1_Event], on connection: PostgresConnection, logger: Logger)
    async throws
  {
    guard !events.isEmpty else { return }
    let rows = try Rows(events)
    try await connection.query(
      """
      WITH lock AS (SELECT pg_advisory_xact_lock(\(lockKey)::int8)),
      rows AS (\(insert: self, rows, after: "lock") RETURNING 1)
      SELECT pg_notify(\(channel)::text, '') FROM (SELECT count(*) FROM rows) AS done
      """, logger: logger)
  }

  /// The advisory lock every append holds until commit (see the type's comment). A statement that
  /// appends on its own must take it before the outbox rows get their sequence numbers.
  public var lockKey: Int64 { Migrator.lockKey(channel) }

  /// Events as column arrays, to bind into one `unnest(…)` (bulk appends, single-statement writes).
  public struct Rows: Sendable {
    public var ids: [UUID] = [], aggregateTypes: [String] = [], aggregateIDs: [String] = [], types: [String] = []
    public var payloads: [ByteBuffer] = [], times: [Date] = []

    /// No events.
    public init() {}

    public init(_ events: [Rapport_Events_V1_Event]) throws {
      for event in events {
        var stored = event
        stored.sequence = 0
        let bytes: [UInt8] = try stored.serializedBytes()
        ids.append(UUID(uuidString: event.id) ?? UUID())
        aggregateTypes.append(event.aggregateType)
        aggregateIDs.append(event.aggregateID)
        types.append(event.type)
        payloads.append(ByteBuffer(bytes: bytes))
        times.append(event.occurredAt.date)
      }
    }
  }

  /// Reads up to `limit` events after `sequence`, in order; `types` empty means every type.
  public func read(
    after sequence: Int64, types: [String], limit: Int, from client: Database, logger: Logger
  ) async throws -> [Rapport_Events_V1_Event] {
    let rows = try await client.query(
      """
      SELECT sequence, payload FROM \(unescaped: schema).outbox
      WHERE sequence > \(sequence) AND (cardinality(\(types)::text[]) = 0 OR type = ANY(\(types)))
      ORDER BY sequence LIMIT \(limit)
      """, logger: logger)
    var events: [Rapport_Events_V1_Event] = []
    for try await (sequence, payload) in rows.decode((Int64, ByteBuffer).self) {
      var event = try Rapport_Events_V1_Event(serializedBytes: Array(payload.readableBytesView))
      event.sequence = sequence
      events.append(event)
    }
    return events
  }

  /// The newest sequence, and how many events of `types` (all when empty) come after `sequence` and
  /// when the oldest of them occurred.
  public func backlog(after sequence: Int64, types: [String], from client: Database, logger: Logger)
    async throws -> (head: Int64, pending: Int64, oldest: Date?)
  {
    let rows = try await client.query(
      """
      SELECT (SELECT coalesce(max(sequence), 0) FROM \(unescaped: schema).outbox), count(*), min(occurred_at)
      FROM \(unescaped: schema).outbox
      WHERE sequence > \(sequence) AND (cardinality(\(types)::text[]) = 0 OR type = ANY(\(types)))
      """, logger: logger)
    for try await (head, pending, oldest) in rows.decode((Int64, Int64, Date?).self) { return (head, pending, oldest) }
    return (0, 0, nil)
  }
}

extension Rapport_Events_V1_Event.OneOf_Payload {
  /// The event type name stored in the outbox `type` column: the name of the payload's message, read
  /// from the generated code (the oneof case's associated message), so no hand-kept list can drift.
  public var typeName: String {
    guard let message = Mirror(reflecting: self).children.first?.value as? any SwiftProtobuf.Message else {
      preconditionFailure("every rapport.events.v1.Event payload is a message")
    }
    return type(of: message).eventType
  }
}

extension SwiftProtobuf.Message {
  /// The event type name of this payload message (`OrderPlaced` for `rapport.events.v1.OrderPlaced`), as
  /// stored in the outbox and used in `EventFeed.Subscribe(types:)`.
  public static var eventType: String {
    String(protoMessageName[protoMessageName.index(after: protoMessageName.lastIndex(of: ".")!)...])
  }
}

extension PostgresQuery.StringInterpolation {
  /// The one outbox insert: `rows` into `outbox`, in their order, read from `unnest` of column arrays
  /// joined to the CTE `source` (the CTE that took the advisory lock: no row is inserted unless it ran),
  /// keeping only rows for which `condition` (SQL over the alias `e`, with its `type` column) holds. Every
  /// parameter is cast, so the statement text is the same for every call (prepared statements). Ends
  /// before RETURNING: the caller chooses what the statement returns.
  public mutating func appendInterpolation(
    insert outbox: Outbox, _ rows: Outbox.Rows, after source: String, where condition: String = "true"
  ) {
    appendLiteral(
      """
      INSERT INTO \(outbox.schema).outbox (id, aggregate_type, aggregate_id, type, payload, occurred_at)
        SELECT e.id, e.aggregate_type, e.aggregate_id, e.type, e.payload, e.occurred_at
        FROM \(source), unnest(
      """)
    appendInterpolation(rows.ids)
    appendLiteral("::uuid[], ")
    appendInterpolation(rows.aggregateTypes)
    appendLiteral("::text[], ")
    appendInterpolation(rows.aggregateIDs)
    appendLiteral("::text[], ")
    appendInterpolation(rows.types)
    appendLiteral("::text[], ")
    appendInterpolation(rows.payloads)
    appendLiteral("::bytea[], ")
    appendInterpolation(rows.times)
    appendLiteral(
      """
      ::timestamptz[])
          WITH ORDINALITY AS e(id, aggregate_type, aggregate_id, type, payload, occurred_at, n)
        WHERE \(condition)
        ORDER BY e.n
      """)
  }
}
