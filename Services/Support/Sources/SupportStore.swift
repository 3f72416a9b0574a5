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
  var orderID: UUID? = nil
  var tags: [String] = []
  var customerTier: String? = nil
  var slaPolicy: String? = nil
  var channelMessageID: String? = nil
  /// Loaded only for single-ticket reads.
  var messages: [Rapport_Support_V1_TicketMessage] = []
  /// Loaded only for single-ticket reads.
  var history: [Rapport_Support_V1_TicketChange] = []
  /// The policy and targets; loaded only for single-ticket reads and changes.
  var sla = SlaTracker(policy: nil, targets: [])

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
      $0.history = history
      $0.team = team ?? ""
      $0.assignee = assignee ?? ""
      $0.orderID = orderID?.uuidString.lowercased() ?? ""
      $0.tags = tags
      $0.customerTier = customerTier ?? ""
      $0.slaPolicy = slaPolicy ?? ""
      $0.slaTargets = sla.targets.map(\.proto)
      $0.channelMessageID = channelMessageID ?? ""
    }
  }

  /// Statuses that count as open.
  static let closedStatuses = [Rapport_Support_V1_TicketStatus.solved.rawValue, Rapport_Support_V1_TicketStatus.closed.rawValue]
}

extension TicketRecord {
  /// Decodes a row selected with `SupportStore.columns`.
  init(row: PostgresRow) throws {
    var r = RowReader(row)
    try self.init(reader: &r)
  }

  /// Decodes `SupportStore.columns` from where `r` stands.
  init(reader r: inout RowReader) throws {
    self.init(
      id: try r.next(), requestID: try r.next(), customerID: try r.next(), subject: try r.next(),
      body: try r.next(), priority: try r.next(), status: try r.next(), channel: try r.next(), createdAt: try r.next())
    firstResponseAt = try r.next()
    solvedAt = try r.next()
    csatRating = try r.next()
    csatComment = try r.next()
    updatedAt = try r.next(Date.self)
    team = try r.next()
    assignee = try r.next()
    orderID = try r.next()
    tags = try r.next()
    customerTier = try r.next()
    slaPolicy = try r.next()
    channelMessageID = try r.next()
  }
}

/// Ticket SQL; nothing else in the service touches the database.
struct SupportStore: Sendable {
  enum Opening: Sendable {
    case created(TicketRecord)
    case replayed(TicketRecord)
    case requestConflict
  }

  let client: Database
  let logger: Logger
  /// The generic-plan pool (`Pools.genericPlans`) for the overviews by customer; the main pool when nil (tests).
  var genericPlans: Database? = nil
  let outbox = SupportMigrations.outbox
  /// The columns `TicketRecord.init(row:)` reads, in its order (it reads by position).
  static let columns = """
    id, request_id, customer_id, subject, body, priority, status, channel, created_at, first_response_at, solved_at,
    csat_rating, csat_comment, updated_at, team, assignee, order_id, tags, customer_tier, sla_policy, channel_message_id
    """

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

  /// Inserts the ticket, its SLA targets (policy matched by priority and tier), the round-robin agent
  /// of its team, and `TicketOpened` (plus `TicketAssigned` when assigned) in one transaction. A known
  /// request id or channel message id replays the stored ticket.
  func open(_ ticket: TicketRecord, requestBytes: [UInt8]) async throws -> Opening {
    let opening: Opening = try await client.transaction(logger: logger) { connection in
      var ticket = ticket
      ticket.customerID = try await aliases.canonical(ticket.customerID, on: connection, logger: logger)
      let policy = try await matchPolicy(
        priority: ticket.priority, tier: ticket.customerTier ?? "", on: connection)
      ticket.slaPolicy = policy?.name
      let inserted = try await connection.query(
        """
        INSERT INTO support.tickets (\(unescaped: Self.columns), request_hash)
        VALUES (\(ticket.id), \(ticket.requestID), \(ticket.customerID), \(ticket.subject), \(ticket.body),
                \(ticket.priority), \(ticket.status), \(ticket.channel), \(ticket.createdAt), NULL, NULL, NULL, NULL,
                \(ticket.createdAt), NULL, NULL, \(ticket.orderID), \(ticket.tags), \(ticket.customerTier),
                \(ticket.slaPolicy), \(ticket.channelMessageID), sha256(\(requestBytes.bytea)))
        ON CONFLICT DO NOTHING
        RETURNING id
        """, logger: logger)
      guard try await inserted.decode(UUID.self).first(where: { _ in true }) != nil else {
        // A request id or channel message id is taken: replay the stored ticket if it was the same request.
        let rows = try await connection.query(
          """
          SELECT \(unescaped: Self.columns), request_hash = sha256(\(requestBytes.bytea)) AS same
          FROM support.tickets
          WHERE request_id = \(ticket.requestID) OR (channel = \(ticket.channel) AND channel_message_id = \(ticket.channelMessageID))
          LIMIT 1
          """, logger: logger)
        for try await row in rows {
          // `same` is the last column, after the ones TicketRecord.init(row:) reads.
          guard let same = Array(row).last, try same.decode(Bool.self) else { return .requestConflict }
          return .replayed(try TicketRecord(row: row))
        }
        throw RPCFailure.unavailable("the ticket could not be stored; retry")
      }
      ticket.sla = SlaTracker(policy: policy, targets: [])
      ticket.sla.open(at: ticket.createdAt)
      try await saveTargets(of: ticket, replacing: [], on: connection)
      let proto = ticket.proto
      var events: [Rapport_Events_V1_Event.OneOf_Payload] = [
        .ticketOpened(.with {
          $0.ticketID = proto.id
          $0.customerID = proto.customerID
          $0.priority = .init(rawValue: ticket.priority) ?? .unspecified
          $0.channel = proto.channel
          $0.openedAt = proto.createTime
        })
      ]
      if let team = ticket.team {
        ticket.team = nil
        let agent = try await nextAgent(of: team, on: connection)
        events += try TicketLifecycle.assign(&ticket, team: team, assignee: agent, at: ticket.createdAt)
        try await connection.query(
          "UPDATE support.tickets SET team = \(ticket.team), assignee = \(ticket.assignee) WHERE id = \(ticket.id)",
          logger: logger)
      }
      try await outbox.append(
        contentsOf: events.map {
          Outbox.event(aggregateType: "ticket", aggregateID: proto.id, occurredAt: ticket.createdAt, $0)
        }, on: connection, logger: logger)
      return .created(ticket)
    }
    switch opening {
    case .created(let ticket), .replayed(let ticket):
      guard let stored = try await get(id: ticket.id) else { throw RPCFailure.notFound("ticket", "\(ticket.id)") }
      if case .created = opening { return .created(stored) }
      return .replayed(stored)
    case .requestConflict:
      return opening
    }
  }

  /// One ticket with its SLA targets and its thread.
  func get(id: UUID) async throws -> TicketRecord? {
    try await client.withConnection { connection in
      let rows = try await connection.query(
        "SELECT \(unescaped: Self.columns) FROM support.tickets WHERE id = \(id)", logger: logger)
      var found: TicketRecord?
      for try await row in rows { found = try TicketRecord(row: row) }
      guard var ticket = found else { return nil }
      try await loadTargets(&ticket, lock: false, on: connection)
      try await loadMessages(&ticket, on: connection)
      try await loadHistory(&ticket, on: connection)
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
    var onlyBreached = false
    var tag: String?
  }

  /// Tickets newest first, after the page token's position (a prepared statement: `ListText`).
  func list(_ filter: Filter, after token: PageToken?, limit: Int) async throws -> [TicketRecord] {
    let rows = try await client.prepared(ListText.self, Self.listQuery(filter, after: token, limit: limit), logger: logger)
    var tickets: [TicketRecord] = []
    for try await row in rows { tickets.append(try TicketRecord(row: row)) }
    return tickets
  }

  static func listQuery(_ filter: Filter, after token: PageToken?, limit: Int) -> PostgresQuery {
    let excluded = filter.onlyOpen ? TicketRecord.closedStatuses : []
    return """
      SELECT \(unescaped: columns) FROM support.tickets t
      WHERE (\(filter.customerID)::uuid IS NULL OR customer_id = \(filter.customerID)::uuid)
        AND NOT (status = ANY(\(excluded)::int8[]))
        AND (cardinality(\(filter.statuses)::int8[]) = 0 OR status = ANY(\(filter.statuses)::int8[]))
        AND (\(filter.priority)::int8 = 0 OR priority = \(filter.priority)::int8)
        AND (\(filter.team)::text IS NULL OR team = \(filter.team)::text)
        AND (\(filter.assignee)::text IS NULL OR assignee = \(filter.assignee)::text)
        AND (\(filter.createdAfter)::timestamptz IS NULL OR created_at >= \(filter.createdAfter)::timestamptz)
        AND (\(filter.createdBefore)::timestamptz IS NULL OR created_at < \(filter.createdBefore)::timestamptz)
        AND (\(filter.tag)::text IS NULL OR tags @> ARRAY[\(filter.tag)::text])
        AND (NOT \(filter.onlyBreached)::bool OR EXISTS (
          SELECT 1 FROM support.sla_targets s
          WHERE s.ticket_id = t.id AND s.state = \(code: SlaState.breached)))
        AND \(after: token, time: "created_at", id: "id", descending: true)
      ORDER BY created_at DESC, id DESC LIMIT \(limit)::int8
      """
  }

  enum ListText: StatementText { static let sql = SupportStore.listQuery(Filter(), after: nil, limit: 0).sql }


  /// A ticket from a row of `columns`.
}
