import Foundation
import GRPCCore
import RapportCore
import RapportProtos

/// Priority, tags, SLA administration and the SLA report.
extension SupportRPCs {
  func changeTicketPriority(
    request: Rapport_Support_V1_ChangeTicketPriorityRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_ChangeTicketPriorityResponse {
    let id = try Validate.uuid(request.ticketID, field: "ticket_id")
    let priority = try Validate.specified(request.priority, field: "priority")
    let actor = try Validate.optional(request.actor, field: "actor", max: 200)
    let now = clock.now
    let (ticket, _) = try await store.change(id, now: now, actor: actor) { ticket, connection in
      let policy = try await store.matchPolicy(
        priority: priority.rawValue, tier: ticket.customerTier ?? "", on: connection)
      return Decision(events: try TicketLifecycle.prioritize(&ticket, to: priority, policy: policy, at: now))
    }
    return .with { $0.ticket = ticket.proto }
  }

  func setTicketTags(
    request: Rapport_Support_V1_SetTicketTagsRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_SetTicketTagsResponse {
    let id = try Validate.uuid(request.ticketID, field: "ticket_id")
    let tags = try Validate.tags(request.tags, field: "tags", max: Self.maxTags)
    let (ticket, _) = try await store.change(id, now: clock.now) { ticket, _ in
      ticket.tags = tags
      return Decision()
    }
    return .with { $0.ticket = ticket.proto }
  }

  func putBusinessCalendar(
    request: Rapport_Support_V1_PutBusinessCalendarRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_PutBusinessCalendarResponse {
    let calendar = try SlaInput.calendar(request.calendar)
    let stored = try await store.putCalendar(calendar, now: clock.now)
    return .with { $0.calendar = stored }
  }

  func putSlaPolicy(
    request: Rapport_Support_V1_PutSlaPolicyRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_PutSlaPolicyResponse {
    let policy = try SlaInput.policy(request.policy)
    let stored = try await store.putPolicy(policy, now: clock.now)
    return .with { $0.policy = stored }
  }

  func listSlaPolicies(
    request: Rapport_Support_V1_ListSlaPoliciesRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_ListSlaPoliciesResponse {
    try await store.administration()
  }

  func putTeam(
    request: Rapport_Support_V1_PutTeamRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_PutTeamResponse {
    let team = try SlaInput.team(request.team)
    try await store.putTeam(team)
    return .with { $0.team = team }
  }

  /// The longest report range.
  static let maxReportDays = 400

  func getSlaReport(
    request: Rapport_Support_V1_GetSlaReportRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_GetSlaReportResponse {
    guard let from = try Validate.time(request.from, isSet: request.hasFrom, field: "from") else {
      throw RPCFailure.invalid("from", "is required")
    }
    guard let to = try Validate.time(request.to, isSet: request.hasTo, field: "to") else {
      throw RPCFailure.invalid("to", "is required")
    }
    guard from < to, to.timeIntervalSince(from) <= Double(Self.maxReportDays) * 86_400 else {
      throw RPCFailure.invalid("to", "must be after from and at most \(Self.maxReportDays) days later")
    }
    let period: String =
      switch try Validate.specified(request.period, field: "period") {
      case .day: "day"
      case .week: "week"
      default: "month"
      }
    let rows = try await store.slaReport(from: from, to: to, period: period)
    return .with { $0.rows = rows }
  }
}
