import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

extension SupportStore {
  /// Loads the thread, in the order it was written.
  func loadMessages(_ ticket: inout TicketRecord, on connection: PostgresConnection) async throws {
    let rows = try await connection.query(
      """
      SELECT id, author_kind, author, body, internal, attachments, created_at FROM support.ticket_messages
      WHERE ticket_id = \(ticket.id) ORDER BY recorded
      """, logger: logger)
    ticket.messages = []
    for try await (id, kind, author, body, isInternal, attachments, at) in rows.decode(
      (UUID, Int, String, String, Bool, ByteBuffer, Date).self)
    {
      let files = try Rapport_Support_V1_TicketMessage(serializedBytes: Array(attachments.readableBytesView)).attachments
      ticket.messages.append(.with {
        $0.id = id.uuidString.lowercased()
        $0.authorKind = .init(rawValue: kind) ?? .unspecified
        $0.author = author
        $0.body = body
        $0.internal = isInternal
        $0.attachments = files
        $0.createTime = .init(microsecondsOf: at)
      })
    }
  }

  /// Locks the ticket (`FOR UPDATE`: steps on one ticket run one after another) and its SLA targets,
  /// lets `decide` change it, then writes the ticket's columns, its targets and the events it returns
  /// (plus `SlaBreached` for targets the step found overdue), in one transaction. NOT_FOUND when there
  /// is no such ticket. Returns the ticket as committed, with its thread.
  func change<Extra: Sendable>(
    _ id: UUID, now: Date, actor: String = "",
    _ decide: (inout TicketRecord, PostgresConnection) async throws -> Decision<Extra>
  ) async throws -> (TicketRecord, Extra) {
    let extra: Extra = try await client.transaction(logger: logger) { connection in
      let rows = try await connection.query(
        "SELECT \(unescaped: Self.columns) FROM support.tickets WHERE id = \(id) FOR UPDATE", logger: logger)
      var found: TicketRecord?
      for try await row in rows { found = try TicketRecord(row: row) }
      guard var ticket = found else { throw RPCFailure.notFound("ticket", id.uuidString.lowercased()) }
      try await loadTargets(&ticket, lock: true, on: connection)
      let before = ticket
      ticket.sla.settle(at: now)
      let decision = try await decide(&ticket, connection)
      let extra = decision.extra
      let events = decision.events + TicketLifecycle.breaches(of: ticket)
      guard !events.isEmpty || ticket.sla.targets != before.sla.targets || ticket.tags != before.tags else { return extra }
      try await connection.query(
        """
        UPDATE support.tickets SET status = \(ticket.status), priority = \(ticket.priority),
          first_response_at = \(ticket.firstResponseAt), solved_at = \(ticket.solvedAt), csat_rating = \(ticket.csatRating),
          csat_comment = \(ticket.csatComment), team = \(ticket.team), assignee = \(ticket.assignee), tags = \(ticket.tags),
          sla_policy = \(ticket.slaPolicy), updated_at = \(now)
        WHERE id = \(id)
        """, logger: logger)
      try await saveTargets(of: ticket, replacing: before.sla.targets, on: connection)
      if let change = TicketLifecycle.change(from: before, to: ticket, actor: actor, at: now) {
        try await record(change, of: id, on: connection)
      }
      let aggregate = id.uuidString.lowercased()
      // A breach happened at its due time, whoever noticed it (the scanner stamps it the same way).
      let stamped = events.map { payload -> Rapport_Events_V1_Event in
        var at = now
        if case .slaBreached(let breach) = payload, breach.hasDueAt { at = breach.dueAt.date }
        return Outbox.event(aggregateType: "ticket", aggregateID: aggregate, occurredAt: at, payload)
      }
      try await outbox.append(contentsOf: stamped, on: connection, logger: logger)
      return extra
    }
    guard let committed = try await get(id: id) else { throw RPCFailure.notFound("ticket", "\(id)") }
    return (committed, extra)
  }

  /// Appends one history entry in the caller's transaction.
  func record(_ change: Rapport_Support_V1_TicketChange, of ticketID: UUID, on connection: PostgresConnection) async throws {
    try await connection.query(
      """
      INSERT INTO support.ticket_history (ticket_id, changed_at, actor, from_status, to_status, from_priority,
        to_priority, assignment_changed, team, assignee)
      VALUES (\(ticketID), \(change.changeTime.date), \(change.actor), \(change.fromStatus.rawValue),
        \(change.toStatus.rawValue), \(change.fromPriority.rawValue), \(change.toPriority.rawValue),
        \(change.assignmentChanged), \(change.team), \(change.assignee))
      """, logger: logger)
  }

  /// The ticket's history, oldest first.
  func loadHistory(_ ticket: inout TicketRecord, on connection: PostgresConnection) async throws {
    let rows = try await connection.query(
      """
      SELECT changed_at, actor, from_status, to_status, from_priority, to_priority, assignment_changed, team, assignee
      FROM support.ticket_history WHERE ticket_id = \(ticket.id) ORDER BY recorded
      """, logger: logger)
    ticket.history = []
    for try await row in rows { ticket.history.append(try .init(row: row)) }
  }

  /// Inserts a message unless the ticket already has one with this request id; returns the stored id
  /// and whether it is new.
  func insertMessage(
    _ message: Rapport_Support_V1_TicketMessage, ticketID: UUID, requestID: String?, at time: Date,
    on connection: PostgresConnection
  ) async throws -> (id: UUID, inserted: Bool) {
    let id = UUID(uuidString: message.id) ?? UUID()
    let attachments: [UInt8] = try Rapport_Support_V1_TicketMessage.with { $0.attachments = message.attachments }
      .serializedBytes()
    let rows = try await connection.query(
      """
      INSERT INTO support.ticket_messages (id, ticket_id, request_id, author_kind, author, body, internal, attachments, created_at)
      VALUES (\(id), \(ticketID), \(requestID), \(message.authorKind.rawValue), \(message.author), \(message.body),
              \(message.internal), \(attachments.bytea), \(time))
      ON CONFLICT (ticket_id, request_id) WHERE request_id IS NOT NULL DO NOTHING RETURNING id
      """, logger: logger)
    for try await _ in rows.decode(UUID.self) { return (id, true) }
    let earlier = try await connection.query(
      "SELECT id FROM support.ticket_messages WHERE ticket_id = \(ticketID) AND request_id = \(requestID)",
      logger: logger)
    for try await stored in earlier.decode(UUID.self) { return (stored, false) }
    throw RPCFailure.unavailable("the message could not be stored; retry")
  }

  /// A customer's ticket count, open tickets, last contact and CSAT.
  func summary(customerID: UUID) async throws -> Rapport_Support_V1_SupportSummary {
    let rows = try await client.prepared(SummaryText.self, Self.summaryQuery(customerID), logger: logger)
    var summary = Rapport_Support_V1_SupportSummary()
    summary.customerID = customerID.uuidString.lowercased()
    for try await row in rows {
      var r = RowReader(row)
      summary = try Self.summary(customerID, &r)
    }
    return summary
  }

  /// The ticket count, open tickets, last contact by the customer, average and count of CSAT ratings of
  /// the customer whose id is the SQL expression `customer`.
  private static func summarySelect(of customer: String) -> String {
    let closed = TicketRecord.closedStatuses.map(String.init).joined(separator: ", ")
    return """
      SELECT count(*), count(*) FILTER (WHERE status NOT IN (\(closed))),
        greatest(max(t.created_at), (SELECT max(m.created_at) FROM support.ticket_messages m
          JOIN support.tickets x ON x.id = m.ticket_id
          WHERE x.customer_id = \(customer) AND m.author_kind = \(Rapport_Support_V1_AuthorKind.customer.rawValue)
            AND NOT m.internal)),
        coalesce(avg(csat_rating), 0)::float8, count(csat_rating)
      FROM support.tickets t WHERE t.customer_id = \(customer)
      """
  }

  /// Decodes `summarySelect`'s columns from where `r` stands.
  private static func summary(_ customerID: UUID, _ r: inout RowReader) throws -> Rapport_Support_V1_SupportSummary {
    var summary = Rapport_Support_V1_SupportSummary()
    summary.customerID = customerID.uuidString.lowercased()
    summary.ticketCount = try r.next()
    summary.openCount = try r.next()
    if let last = try r.next(Date?.self) { summary.lastContactTime = .init(microsecondsOf: last) }
    summary.averageCsat = try r.next()
    summary.ratedCount = try r.next()
    return summary
  }

  static func summaryQuery(_ customerID: UUID) -> PostgresQuery {
    """
    SELECT s.* FROM (SELECT \(customerID)::uuid AS id) k CROSS JOIN LATERAL (\(unescaped: summarySelect(of: "k.id"))) s
    """
  }

  enum SummaryText: StatementText { static let sql = SupportStore.summaryQuery(UUID()).sql }

  /// GetCustomerSupportOverview: the summary and the `limit` most recent open tickets.
  func overview(customerID: UUID, limit: Int) async throws -> (Rapport_Support_V1_SupportSummary, [TicketRecord]) {
    guard let overview = try await overviews(customerIDs: [customerID], limit: limit)[customerID] else {
      throw RPCFailure.internal("an overview is missing")
    }
    return overview
  }

  /// The overviews of several customers in one statement: per customer, the summary on every row, and the
  /// `limit` most recent open tickets (none: one row whose ticket columns are NULL). Every id asked has an
  /// entry.
  func overviews(
    customerIDs: [UUID], limit: Int
  ) async throws -> [UUID: (Rapport_Support_V1_SupportSummary, [TicketRecord])] {
    let rows = try await (genericPlans ?? client).prepared(OverviewText.self, Self.overviewQuery(customerIDs, limit: limit), logger: logger)
    var found: [UUID: (Rapport_Support_V1_SupportSummary, [TicketRecord])] = [:]
    for try await row in rows {
      var r = RowReader(row)
      let id = try r.next(UUID.self)
      let summary = try Self.summary(id, &r)
      var open = found[id]?.1 ?? []
      if try r.next(Bool.self) { open.append(try TicketRecord(reader: &r)) }
      found[id] = (summary, open)
    }
    return found
  }

  static func overviewQuery(_ customerIDs: [UUID], limit: Int) -> PostgresQuery {
    let closed = TicketRecord.closedStatuses.map(String.init).joined(separator: ", ")
    return """
      SELECT k.id, s.*, r.id IS NOT NULL, r.*
      FROM unnest(\(customerIDs)::uuid[]) k(id)
      CROSS JOIN LATERAL (\(unescaped: summarySelect(of: "k.id"))) s
      LEFT JOIN LATERAL (
        SELECT \(unescaped: columns) FROM support.tickets
        WHERE customer_id = k.id AND status NOT IN (\(unescaped: closed))
        ORDER BY created_at DESC, id DESC LIMIT \(limit)::int8) r ON true
      """
  }

  enum OverviewText: StatementText { static let sql = SupportStore.overviewQuery([], limit: 0).sql }

}

extension Rapport_Support_V1_TicketChange {
  /// Decodes the columns `loadHistory` selects, in their order.
  init(row: PostgresRow) throws {
    var r = RowReader(row)
    self.init()
    changeTime = .init(microsecondsOf: try r.next(Date.self))
    actor = try r.next()
    fromStatus = .init(rawValue: try r.next(Int.self)) ?? .unspecified
    toStatus = .init(rawValue: try r.next(Int.self)) ?? .unspecified
    fromPriority = .init(rawValue: try r.next(Int.self)) ?? .unspecified
    toPriority = .init(rawValue: try r.next(Int.self)) ?? .unspecified
    assignmentChanged = try r.next()
    team = try r.next()
    assignee = try r.next()
  }
}
