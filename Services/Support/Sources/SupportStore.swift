import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// A ticket as stored.
struct TicketRecord: Sendable {
  var id: UUID
  var requestID: String?
  var customerID: UUID
  var subject: String
  var body: String
  var priority: Int
  var status: Int
  var channel: Int
  var createdAt: Date
  var firstResponseAt: Date? = nil
  var solvedAt: Date? = nil
  var csatRating: Int? = nil
  var csatComment: String? = nil
  var updatedAt: Date? = nil
  var team: String? = nil
  var assignee: String? = nil
  /// Loaded only for single-ticket reads.
  var messages: [Rapport_Support_V1_TicketMessage] = []

  var status_: Rapport_Support_V1_TicketStatus {
    get { .init(rawValue: status) ?? .unspecified }
    set { status = newValue.rawValue }
  }

  var proto: Rapport_Support_V1_Ticket {
    .with {
      $0.id = id.uuidString.lowercased()
      $0.customerID = customerID.uuidString.lowercased()
      $0.subject = subject
      $0.body = body
      $0.priority = .init(rawValue: priority) ?? .unspecified
      $0.status = .init(rawValue: status) ?? .unspecified
      $0.channel = .init(rawValue: channel) ?? .unspecified
      $0.createTime = .init(microsecondsOf: createdAt)
      $0.updateTime = .init(microsecondsOf: updatedAt ?? createdAt)
      if let firstResponseAt { $0.firstResponseTime = .init(microsecondsOf: firstResponseAt) }
      if let solvedAt { $0.solveTime = .init(microsecondsOf: solvedAt) }
      $0.csatRating = Int32(csatRating ?? 0)
      $0.csatComment = csatComment ?? ""
      $0.messages = messages
      $0.team = team ?? ""
      $0.assignee = assignee ?? ""
    }
  }

  /// Statuses that count as open.
  static let closedStatuses = [Rapport_Support_V1_TicketStatus.solved.rawValue, Rapport_Support_V1_TicketStatus.closed.rawValue]
}

/// Ticket SQL; nothing else in the service touches the database.
struct SupportStore: Sendable {
  enum Opening: Sendable {
    case created(TicketRecord)
    case replayed(TicketRecord)
    case requestConflict
  }

  let client: PostgresClient
  let logger: Logger
  let outbox = SupportMigrations.outbox
  static let columns = "id, request_id, customer_id, subject, body, priority, status, channel, created_at"
  static let lifecycleColumns = "first_response_at, solved_at, csat_rating, csat_comment, updated_at, team, assignee"

  private let aliases = CustomerAliases(schema: SupportMigrations.schema)

  /// Applies a customer-feed event in the caller's (cursor) transaction: `CustomerMerged` moves the
  /// duplicate's tickets to the survivor; `CustomerErased` redacts the free text of the customer's
  /// tickets (subject, body) and keeps priorities, states and timings.
  func applyCustomerEvent(_ event: Rapport_Events_V1_Event, on connection: PostgresConnection) async throws {
    switch event.payload {
    case .customerMerged(let merge)?:
      guard let (survivor, duplicate) = try await aliases.record(
        merge, at: event.occurredAt.date, on: connection, logger: logger)
      else { return }
      try await connection.query(
        "UPDATE support.tickets SET customer_id = \(survivor) WHERE customer_id = \(duplicate)", logger: logger)
    case .customerErased(let erased)?:
      guard let id = UUID(uuidString: erased.customerID) else { return }
      try await connection.query(
        "UPDATE support.tickets SET subject = \(Self.redacted), body = '', csat_comment = NULL WHERE customer_id = \(id)",
        logger: logger)
      try await connection.query(
        """
        UPDATE support.ticket_messages SET body = '', attachments = ''::bytea,
          author = CASE WHEN author_kind = \(Rapport_Support_V1_AuthorKind.customer.rawValue) THEN '' ELSE author END
        WHERE ticket_id IN (SELECT id FROM support.tickets WHERE customer_id = \(id))
        """, logger: logger)
    default:
      return
    }
  }

  /// What an erased customer's ticket subjects read.
  static let redacted = "[erased]"

  /// Inserts the ticket and `TicketOpened` in one transaction; a known request id replays.
  func open(_ ticket: TicketRecord, requestBytes: [UInt8]) async throws -> Opening {
    try await client.transaction(logger: logger) { connection in
      var ticket = ticket
      ticket.customerID = try await aliases.canonical(ticket.customerID, on: connection, logger: logger)
      let inserted = try await connection.query(
        """
        INSERT INTO support.tickets (\(unescaped: Self.columns), request_hash, updated_at)
        VALUES (\(ticket.id), \(ticket.requestID), \(ticket.customerID), \(ticket.subject), \(ticket.body),
                \(ticket.priority), \(ticket.status), \(ticket.channel), \(ticket.createdAt), sha256(\(requestBytes.bytea)),
                \(ticket.createdAt))
        ON CONFLICT (request_id) WHERE request_id IS NOT NULL DO NOTHING
        RETURNING created_at
        """, logger: logger)
      var created = false
      for try await stored in inserted.decode(Date.self) {
        ticket.createdAt = stored
        created = true
      }
      guard created else {
        // Only a request id can conflict: replay the stored ticket if it was the same request.
        let rows = try await connection.query(
          """
          SELECT \(unescaped: Self.columns), request_hash = sha256(\(requestBytes.bytea))
          FROM support.tickets WHERE request_id = \(ticket.requestID)
          """, logger: logger)
        for try await row in rows.decode((UUID, String?, UUID, String, String, Int, Int, Int, Date, Bool).self) {
          guard row.9 else { return .requestConflict }
          var earlier = record((row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8))
          try await loadLifecycle(&earlier, on: connection)
          return .replayed(earlier)
        }
        throw RPCFailure.internal("request id conflict without a stored ticket")
      }
      let proto = ticket.proto
      let event = Outbox.event(
        aggregateType: "ticket", aggregateID: proto.id, occurredAt: ticket.createdAt,
        .ticketOpened(.with {
          $0.ticketID = proto.id
          $0.customerID = proto.customerID
          $0.priority = Int32(ticket.priority)
          $0.channel = proto.channel
          $0.openedAt = proto.createTime
        }))
      try await outbox.append(event, on: connection, logger: logger)
      return .created(ticket)
    }
  }

  /// One ticket with its lifecycle fields and its thread.
  func get(id: UUID) async throws -> TicketRecord? {
    try await client.withConnection { connection in
      let rows = try await connection.query(
        "SELECT \(unescaped: Self.columns) FROM support.tickets WHERE id = \(id)", logger: logger)
      var found: TicketRecord?
      for try await row in rows.decode(Row.self) { found = record(row) }
      guard var ticket = found else { return nil }
      try await loadLifecycle(&ticket, on: connection)
      try await loadMessages(&ticket, on: connection)
      return ticket
    }
  }

  /// Filters of `list`.
  struct Filter: Sendable {
    var customerID: UUID?
    var onlyOpen = false
    var statuses: [Int] = []
    var priority = 0
    var team: String?
    var assignee: String?
    var createdAfter: Date?
    var createdBefore: Date?
  }

  /// Tickets newest first, after the page token's position.
  func list(_ filter: Filter, after token: PageToken?, limit: Int) async throws -> [TicketRecord] {
    let excluded = filter.onlyOpen ? TicketRecord.closedStatuses : []
    let rows = try await client.query(
      """
      SELECT \(unescaped: Self.columns) FROM support.tickets
      WHERE (\(filter.customerID)::uuid IS NULL OR customer_id = \(filter.customerID))
        AND NOT (status = ANY(\(excluded)))
        AND (cardinality(\(filter.statuses)::integer[]) = 0 OR status = ANY(\(filter.statuses)))
        AND (\(filter.priority) = 0 OR priority = \(filter.priority))
        AND (\(filter.team)::text IS NULL OR team = \(filter.team))
        AND (\(filter.assignee)::text IS NULL OR assignee = \(filter.assignee))
        AND (\(filter.createdAfter)::timestamptz IS NULL OR created_at >= \(filter.createdAfter))
        AND (\(filter.createdBefore)::timestamptz IS NULL OR created_at < \(filter.createdBefore))
        AND (\(token == nil) OR (created_at, id) < ('epoch'::timestamptz + \(token?.micros ?? 0) * interval '1 microsecond', \(token?.id ?? UUID())))
      ORDER BY created_at DESC, id DESC LIMIT \(limit)
      """, logger: logger)
    var tickets: [TicketRecord] = []
    for try await row in rows.decode(Row.self) { tickets.append(record(row)) }
    return tickets
  }

  typealias Row = (UUID, String?, UUID, String, String, Int, Int, Int, Date)

  func record(_ row: Row) -> TicketRecord {
    TicketRecord(
      id: row.0, requestID: row.1, customerID: row.2, subject: row.3, body: row.4, priority: row.5,
      status: row.6, channel: row.7, createdAt: row.8)
  }
}
