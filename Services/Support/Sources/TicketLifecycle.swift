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
    return [
      .ticketStatusChanged(.with {
        $0.ticketID = ticket.id.uuidString.lowercased()
        $0.customerID = ticket.customerID.uuidString.lowercased()
        $0.from = Int32(from.rawValue)
        $0.to = Int32(status.rawValue)
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
      case .customer where ticket.status_ == .solved || ticket.status_ == .pending:
        events += try move(&ticket, to: .open, at: now)
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
