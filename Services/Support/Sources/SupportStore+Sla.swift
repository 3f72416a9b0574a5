import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// SLA policies, calendars, teams and ticket targets.
extension SupportStore {
  // MARK: Ticket targets

  /// Loads the ticket's targets and, for a change (`lock`), its policy with the calendar as stored now;
  /// `lock` also locks the target rows so the scanner skips them until this transaction ends.
  func loadTargets(_ ticket: inout TicketRecord, lock: Bool, on connection: PostgresConnection) async throws {
    var policy: SlaPolicy?
    if lock, let name = ticket.slaPolicy { policy = try await self.policy(named: name, on: connection) }
    let rows = try await connection.query(
      """
      SELECT kind, cycle, state, target_s, consumed_s, running_since, started_at, due_at, achieved_at, breached_at
      FROM support.sla_targets WHERE ticket_id = \(ticket.id) ORDER BY kind, cycle \(unescaped: lock ? "FOR UPDATE" : "")
      """, logger: logger)
    var targets: [SlaTarget] = []
    for try await (kind, cycle, state, target, consumed, running, started, due, achieved, breached) in rows.decode(
      (Int, Int, Int, Int, Double, Date?, Date, Date?, Date?, Date?).self)
    {
      targets.append(
        SlaTarget(
          kind: SlaKind(rawValue: kind) ?? .unspecified, cycle: cycle, state: SlaState(rawValue: state) ?? .unspecified,
          clock: SlaClock(target: TimeInterval(target), consumed: consumed, runningSince: running), startedAt: started,
          dueAt: due, achievedAt: achieved, breachedAt: breached))
    }
    ticket.sla = SlaTracker(policy: policy, targets: targets)
  }

  /// Writes the targets that differ from `earlier` and deletes the ones no longer there.
  func saveTargets(of ticket: TicketRecord, replacing earlier: [SlaTarget], on connection: PostgresConnection) async throws {
    let current = ticket.sla.targets
    for gone in earlier where !current.contains(where: { $0.kind == gone.kind && $0.cycle == gone.cycle }) {
      try await connection.query(
        """
        DELETE FROM support.sla_targets
        WHERE ticket_id = \(ticket.id) AND kind = \(gone.kind.rawValue) AND cycle = \(gone.cycle)
        """, logger: logger)
    }
    for target in current where !earlier.contains(target) {
      try await connection.query(
        """
        INSERT INTO support.sla_targets
          (ticket_id, kind, cycle, state, target_s, consumed_s, running_since, started_at, due_at, achieved_at, breached_at)
        VALUES (\(ticket.id), \(target.kind.rawValue), \(target.cycle), \(target.state.rawValue), \(Int(target.clock.target)),
                \(target.clock.consumed), \(target.clock.runningSince), \(target.startedAt), \(target.dueAt),
                \(target.achievedAt), \(target.breachedAt))
        ON CONFLICT (ticket_id, kind, cycle) DO UPDATE SET state = excluded.state, target_s = excluded.target_s,
          consumed_s = excluded.consumed_s, running_since = excluded.running_since, due_at = excluded.due_at,
          achieved_at = excluded.achieved_at, breached_at = excluded.breached_at
        """, logger: logger)
    }
  }

  // MARK: Policies

  /// The most specific policy for a priority and tier: tier and priority, then tier, then priority,
  /// then neither; ties by name.
  func matchPolicy(priority: Int, tier: String, on connection: PostgresConnection) async throws -> SlaPolicy? {
    let rows = try await connection.query(
      """
      SELECT name FROM support.sla_policies
      WHERE (priority = \(code: Rapport_Support_V1_TicketPriority.unspecified) OR priority = \(priority)) AND (customer_tier = '' OR customer_tier = \(tier))
      ORDER BY customer_tier <> '' DESC, priority <> \(code: Rapport_Support_V1_TicketPriority.unspecified) DESC, name LIMIT 1
      """, logger: logger)
    for try await name in rows.decode(String.self) { return try await policy(named: name, on: connection) }
    return nil
  }

  /// A stored policy with its calendar.
  func policy(named name: String, on connection: PostgresConnection) async throws -> SlaPolicy? {
    let rows = try await connection.query(
      """
      SELECT p.first_response_s, p.next_response_s, p.resolution_s, c.definition
      FROM support.sla_policies p JOIN support.calendars c ON c.name = p.calendar WHERE p.name = \(name)
      """, logger: logger)
    for try await (first, next, resolution, definition) in rows.decode((Int, Int, Int, ByteBuffer).self) {
      let stored = try Rapport_Support_V1_BusinessCalendar(serializedBytes: Array(definition.readableBytesView))
      var targets: [SlaKind: Int] = [:]
      for (kind, seconds) in [(SlaKind.firstResponse, first), (.nextResponse, next), (.resolution, resolution)] where seconds > 0 {
        targets[kind] = seconds
      }
      return SlaPolicy(name: name, calendar: try SlaInput.calendar(stored, field: "calendar"), targets: targets)
    }
    return nil
  }

  /// Stores a validated calendar.
  func putCalendar(_ calendar: Rapport_Support_V1_BusinessCalendar, now: Date) async throws -> Rapport_Support_V1_BusinessCalendar {
    var stored = calendar
    stored.updateTime = .init(microsecondsOf: now)
    let bytes: [UInt8] = try stored.serializedBytes()
    try await client.query(
      """
      INSERT INTO support.calendars (name, definition, updated_at) VALUES (\(stored.name), \(bytes.bytea), \(now))
      ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at
      """, logger: logger)
    return stored
  }

  /// Stores a validated policy; NOT_FOUND when its calendar does not exist.
  func putPolicy(_ policy: Rapport_Support_V1_SlaPolicy, now: Date) async throws -> Rapport_Support_V1_SlaPolicy {
    var stored = policy
    stored.updateTime = .init(microsecondsOf: now)
    let rows = try await client.query(
      """
      INSERT INTO support.sla_policies
        (name, priority, customer_tier, calendar, first_response_s, next_response_s, resolution_s, updated_at)
      SELECT \(policy.name), \(policy.priority.rawValue), \(policy.customerTier), name,
             \(Int(policy.firstResponseMinutes) * 60), \(Int(policy.nextResponseMinutes) * 60),
             \(Int(policy.resolutionMinutes) * 60), \(now)
      FROM support.calendars WHERE name = \(policy.calendar)
      ON CONFLICT (name) DO UPDATE SET priority = excluded.priority, customer_tier = excluded.customer_tier,
        calendar = excluded.calendar, first_response_s = excluded.first_response_s,
        next_response_s = excluded.next_response_s, resolution_s = excluded.resolution_s, updated_at = excluded.updated_at
      RETURNING name
      """, logger: logger)
    guard try await rows.decode(String.self).first(where: { _ in true }) != nil else {
      throw RPCFailure.notFound("calendar", policy.calendar)
    }
    return stored
  }

  /// Stores a validated team; its rotation continues where it was.
  func putTeam(_ team: Rapport_Support_V1_Team) async throws {
    try await client.query(
      """
      INSERT INTO support.teams (name, agents, round_robin) VALUES (\(team.name), \(team.agents), \(team.roundRobin))
      ON CONFLICT (name) DO UPDATE SET agents = excluded.agents, round_robin = excluded.round_robin
      """, logger: logger)
  }

  /// The next agent of a round-robin team (nil for other teams and unknown ones). Concurrent openings
  /// each take their own turn: the counter is incremented under the row lock.
  func nextAgent(of team: String, on connection: PostgresConnection) async throws -> String? {
    let rows = try await connection.query(
      """
      UPDATE support.teams SET turns = turns + 1
      WHERE name = \(team) AND round_robin AND cardinality(agents) > 0
      RETURNING agents[(turns - 1) % cardinality(agents) + 1]
      """, logger: logger)
    for try await agent in rows.decode(String.self) { return agent }
    return nil
  }

  /// Every policy, calendar and team, by name.
  func administration() async throws -> Rapport_Support_V1_ListSlaPoliciesResponse {
    var response = Rapport_Support_V1_ListSlaPoliciesResponse()
    let policies = try await client.query(
      """
      SELECT name, priority, customer_tier, calendar, first_response_s, next_response_s, resolution_s, updated_at
      FROM support.sla_policies ORDER BY name
      """, logger: logger)
    for try await (name, priority, tier, calendar, first, next, resolution, updated) in policies.decode(
      (String, Int, String, String, Int, Int, Int, Date).self)
    {
      response.policies.append(.with {
        $0.name = name
        $0.priority = .init(rawValue: priority) ?? .unspecified
        $0.customerTier = tier
        $0.calendar = calendar
        $0.firstResponseMinutes = Int32(first / 60)
        $0.nextResponseMinutes = Int32(next / 60)
        $0.resolutionMinutes = Int32(resolution / 60)
        $0.updateTime = .init(microsecondsOf: updated)
      })
    }
    let calendars = try await client.query("SELECT definition FROM support.calendars ORDER BY name", logger: logger)
    for try await definition in calendars.decode(ByteBuffer.self) {
      response.calendars.append(try .init(serializedBytes: Array(definition.readableBytesView)))
    }
    let teams = try await client.query("SELECT name, agents, round_robin FROM support.teams ORDER BY name", logger: logger)
    for try await (name, agents, roundRobin) in teams.decode((String, [String], Bool).self) {
      response.teams.append(.with {
        $0.name = name
        $0.agents = agents
        $0.roundRobin = roundRobin
      })
    }
    return response
  }

  // MARK: Scanner

  /// Rows a scan handles per transaction.
  static let scanBatch = 500

  /// Marks running targets due at or before `now` as BREACHED (at their due time) and emits one
  /// `SlaBreached` each. Rows a ticket change holds are skipped (that change settles them itself).
  /// Returns how many were breached.
  func breachDueTargets(now: Date) async throws -> Int {
    try await client.transaction(logger: logger) { connection in
      let rows = try await connection.query(
        """
        WITH due AS (
          SELECT ticket_id, kind, cycle FROM support.sla_targets
          WHERE state = \(SlaState.active.rawValue) AND due_at <= \(now)
          ORDER BY due_at LIMIT \(Self.scanBatch) FOR UPDATE SKIP LOCKED)
        UPDATE support.sla_targets s SET state = \(SlaState.breached.rawValue), breached_at = s.due_at
        FROM due, support.tickets t
        WHERE s.ticket_id = due.ticket_id AND s.kind = due.kind AND s.cycle = due.cycle AND t.id = s.ticket_id
        RETURNING s.ticket_id, s.kind, s.cycle, s.due_at, t.customer_id, t.sla_policy, t.priority, t.team, t.assignee
        """, logger: logger)
      var events: [Rapport_Events_V1_Event] = []
      for try await (ticket, kind, cycle, due, customer, policy, priority, team, assignee) in rows.decode(
        (UUID, Int, Int, Date, UUID, String?, Int, String?, String?).self)
      {
        let id = ticket.uuidString.lowercased()
        events.append(
          Outbox.event(
            aggregateType: "ticket", aggregateID: id, occurredAt: due,
            .slaBreached(.with {
              $0.ticketID = id
              $0.customerID = customer.uuidString.lowercased()
              $0.policy = policy ?? ""
              $0.kind = .init(rawValue: kind) ?? .unspecified
              $0.cycle = Int32(cycle)
              $0.dueAt = .init(microsecondsOf: due)
              $0.priority = .init(rawValue: priority) ?? .unspecified
              $0.team = team ?? ""
              $0.assignee = assignee ?? ""
            })))
      }
      try await outbox.append(contentsOf: events, on: connection, logger: logger)
      return events.count
    }
  }

  /// Closes tickets SOLVED at or before `cutoff`, emitting `TicketStatusChanged` for each. Returns how many.
  func closeSolvedTickets(solvedBefore cutoff: Date, now: Date) async throws -> Int {
    try await client.transaction(logger: logger) { connection in
      let solved = Rapport_Support_V1_TicketStatus.solved.rawValue
      let rows = try await connection.query(
        """
        UPDATE support.tickets SET status = \(Rapport_Support_V1_TicketStatus.closed.rawValue), updated_at = \(now)
        WHERE id IN (
          SELECT id FROM support.tickets WHERE status = \(solved) AND solved_at <= \(cutoff)
          LIMIT \(Self.scanBatch) FOR UPDATE SKIP LOCKED)
        RETURNING id, customer_id
        """, logger: logger)
      var events: [Rapport_Events_V1_Event] = []
      for try await (ticket, customer) in rows.decode((UUID, UUID).self) {
        let id = ticket.uuidString.lowercased()
        events.append(
          Outbox.event(
            aggregateType: "ticket", aggregateID: id, occurredAt: now,
            .ticketStatusChanged(.with {
              $0.ticketID = id
              $0.customerID = customer.uuidString.lowercased()
              $0.from = .init(rawValue: solved) ?? .unspecified
              $0.to = .closed
              $0.changedAt = .init(microsecondsOf: now)
            })))
      }
      try await outbox.append(contentsOf: events, on: connection, logger: logger)
      return events.count
    }
  }

  // MARK: Report

  /// Targets of tickets opened in [from, to), grouped by period (UTC), policy and kind.
  func slaReport(from: Date, to: Date, period: String) async throws -> [Rapport_Support_V1_SlaReportRow] {
    let rows = try await client.query(
      """
      SELECT date_trunc(\(period), t.created_at, 'UTC') AS period_start, coalesce(t.sla_policy, '') AS policy, s.kind,
        count(*) FILTER (WHERE s.state = \(SlaState.achieved.rawValue)),
        count(*) FILTER (WHERE s.state = \(SlaState.breached.rawValue)),
        count(*) FILTER (WHERE s.state IN (\(SlaState.active.rawValue), \(SlaState.paused.rawValue)))
      FROM support.sla_targets s JOIN support.tickets t ON t.id = s.ticket_id
      WHERE t.created_at >= \(from) AND t.created_at < \(to)
      GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
      """, logger: logger)
    var report: [Rapport_Support_V1_SlaReportRow] = []
    for try await (start, policy, kind, achieved, breached, open) in rows.decode(
      (Date, String, Int, Int64, Int64, Int64).self)
    {
      report.append(.with {
        $0.periodStart = .init(microsecondsOf: start)
        $0.policy = policy
        $0.kind = .init(rawValue: kind) ?? .unspecified
        $0.achieved = achieved
        $0.breached = breached
        $0.open = open
        $0.achievedRatio = achieved + breached == 0 ? 0 : Double(achieved) / Double(achieved + breached)
      })
    }
    return report
  }
}
