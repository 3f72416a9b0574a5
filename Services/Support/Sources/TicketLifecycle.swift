import Foundation
import RapportCore
import RapportProtos

/// The ticket state machine. NEW → OPEN/PENDING/ON_HOLD/SOLVED; between OPEN, PENDING, ON_HOLD and
/// SOLVED freely; SOLVED → CLOSED; CLOSED is final. Repeating the current status changes nothing.
enum TicketLifecycle {
  typealias Events = [Rapport_Events_V1_Event.OneOf_Payload]

  static func move(_ ticket: inout TicketRecord, to status: Rapport_Support_V1_TicketStatus, at now: Date) throws -> Events {
    let from = ticket.status_
    if from == status { return [] }
    guard from != .closed else { throw illegal(ticket, "a CLOSED ticket cannot change") }
    guard status != .closed || from == .solved else { throw illegal(ticket, "only SOLVED tickets can be closed") }
    ticket.status_ = status
    if status == .solved { ticket.solvedAt = now }
    ticket.sla.statusChanged(from: from, to: status, at: now)
    return [
      .ticketStatusChanged(.with {
        $0.ticketID = ticket.id.uuidString.lowercased()
        $0.customerID = ticket.customerID.uuidString.lowercased()
        $0.from = from
        $0.to = status
        $0.changedAt = .init(microsecondsOf: now)
      })
    ]
  }

  /// A new message's effects: the first public agent reply is the first response (and opens a NEW
  /// ticket); a public customer reply reopens a SOLVED or PENDING ticket.
  static func add(_ message: Rapport_Support_V1_TicketMessage, to ticket: inout TicketRecord, at now: Date) throws -> Events {
    guard ticket.status_ != .closed else { throw illegal(ticket, "messages cannot be added to a CLOSED ticket") }
    var events: Events = []
    var first = false
    if !message.internal {
      switch message.authorKind {
      case .agent:
        if ticket.firstResponseAt == nil {
          ticket.firstResponseAt = now
          first = true
        }
        if ticket.status_ == .new { events += try move(&ticket, to: .open, at: now) }
        ticket.sla.agentReplied(at: now)
      case .customer:
        if ticket.status_ == .solved || ticket.status_ == .pending { events += try move(&ticket, to: .open, at: now) }
        ticket.sla.customerWrote(at: now, afterFirstResponse: ticket.firstResponseAt != nil)
      default:
        break
      }
    }
    events.insert(
      .ticketMessageAdded(.with {
        $0.ticketID = ticket.id.uuidString.lowercased()
        $0.customerID = ticket.customerID.uuidString.lowercased()
        $0.messageID = message.id
        $0.authorKind = Int32(message.authorKind.rawValue)
        $0.internal = message.internal
        $0.firstResponse = first
        $0.addedAt = .init(microsecondsOf: now)
      }), at: 0)
    return events
  }

  static func rate(_ ticket: inout TicketRecord, rating: Int, comment: String, at now: Date) throws -> Events {
    guard ticket.status_ == .solved || ticket.status_ == .closed else {
      throw illegal(ticket, "only SOLVED or CLOSED tickets can be rated")
    }
    guard ticket.csatRating == nil else { throw RPCFailure.failedPrecondition("the ticket was already rated") }
    ticket.csatRating = rating
    ticket.csatComment = comment.isEmpty ? nil : comment
    return [
      .ticketRated(.with {
        $0.ticketID = ticket.id.uuidString.lowercased()
        $0.customerID = ticket.customerID.uuidString.lowercased()
        $0.rating = Int32(rating)
        $0.ratedAt = .init(microsecondsOf: now)
      })
    ]
  }

  /// Assigns the ticket; the same assignment again changes nothing.
  static func assign(_ ticket: inout TicketRecord, team: String?, assignee: String?, at now: Date) throws -> Events {
    guard ticket.status_ != .closed else { throw illegal(ticket, "a CLOSED ticket cannot be reassigned") }
    if ticket.team == team && ticket.assignee == assignee { return [] }
    ticket.team = team
    ticket.assignee = assignee
    return [
      .ticketAssigned(.with {
        $0.ticketID = ticket.id.uuidString.lowercased()
        $0.customerID = ticket.customerID.uuidString.lowercased()
        $0.team = team ?? ""
        $0.assignee = assignee ?? ""
        $0.assignedAt = .init(microsecondsOf: now)
      })
    ]
  }

  /// A new priority: the policy is matched again (`policy`) and running targets recomputed.
  static func prioritize(
    _ ticket: inout TicketRecord, to priority: Rapport_Support_V1_TicketPriority, policy: SlaPolicy?, at now: Date
  ) throws -> Events {
    guard ticket.status_ != .closed else { throw illegal(ticket, "a CLOSED ticket cannot change") }
    let from = ticket.priority
    guard from != priority.rawValue else { return [] }
    ticket.priority = priority.rawValue
    ticket.slaPolicy = policy?.name
    let done = ticket.status_ == .solved
    ticket.sla.replace(
      policy: policy, at: now, needsFirstResponse: ticket.firstResponseAt == nil && !done, needsResolution: !done,
      paused: ticket.status_ == .pending)
    return [
      .ticketPriorityChanged(.with {
        $0.ticketID = ticket.id.uuidString.lowercased()
        $0.customerID = ticket.customerID.uuidString.lowercased()
        $0.from = .init(rawValue: from) ?? .unspecified
        $0.to = priority
        $0.slaPolicy = policy?.name ?? ""
        $0.changedAt = .init(microsecondsOf: now)
      })
    ]
  }

  /// `SlaBreached` for each target the current step found overdue.
  /// The history entry for one write: what changed in status, priority and assignment between `before` and
  /// `after`, or nil when none of them did (tags, messages, ratings and SLA clocks are not history).
  static func change(
    from before: TicketRecord, to after: TicketRecord, actor: String, at now: Date
  ) -> Rapport_Support_V1_TicketChange? {
    var change = Rapport_Support_V1_TicketChange()
    if before.status != after.status {
      change.fromStatus = before.status_
      change.toStatus = after.status_
    }
    if before.priority != after.priority {
      change.fromPriority = .init(rawValue: before.priority) ?? .unspecified
      change.toPriority = .init(rawValue: after.priority) ?? .unspecified
    }
    if before.team != after.team || before.assignee != after.assignee {
      change.assignmentChanged = true
      change.team = after.team ?? ""
      change.assignee = after.assignee ?? ""
    }
    guard change != Rapport_Support_V1_TicketChange() else { return nil }
    change.changeTime = .init(microsecondsOf: now)
    change.actor = actor
    return change
  }

  static func breaches(of ticket: TicketRecord) -> Events {
    ticket.sla.breached.map { target in
      .slaBreached(.with {
        $0.ticketID = ticket.id.uuidString.lowercased()
        $0.customerID = ticket.customerID.uuidString.lowercased()
        $0.policy = ticket.slaPolicy ?? ""
        $0.kind = target.kind
        $0.cycle = Int32(target.cycle)
        if let due = target.dueAt { $0.dueAt = .init(microsecondsOf: due) }
        $0.priority = .init(rawValue: ticket.priority) ?? .unspecified
        $0.team = ticket.team ?? ""
        $0.assignee = ticket.assignee ?? ""
      })
    }
  }

  static func illegal(_ ticket: TicketRecord, _ rule: String) -> Error {
    RPCFailure.failedPrecondition("ticket is \(name(ticket.status_)); \(rule)")
  }

  static func name(_ status: Rapport_Support_V1_TicketStatus) -> String {
    switch status {
    case .new: "NEW"
    case .open: "OPEN"
    case .pending: "PENDING"
    case .onHold: "ON_HOLD"
    case .solved: "SOLVED"
    case .closed: "CLOSED"
    default: "UNSPECIFIED"
    }
  }
}
