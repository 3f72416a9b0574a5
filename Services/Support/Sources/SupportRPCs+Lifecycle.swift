import Foundation
import GRPCCore
import RapportCore
import RapportProtos

extension SupportRPCs {
  /// Attachments one message may carry, and the largest attachment.
  static let maxAttachments = 10
  static let maxAttachmentBytes: Int64 = 25 * 1024 * 1024

  func addMessage(
    request: Rapport_Support_V1_AddMessageRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_AddMessageResponse {
    let id = try Validate.uuid(request.ticketID, field: "ticket_id")
    var message = Rapport_Support_V1_TicketMessage()
    message.id = UUID().uuidString.lowercased()
    message.authorKind = try Validate.specified(request.authorKind, field: "author_kind")
    message.author = try Validate.optional(request.author, field: "author", max: 200)
    message.body = try Validate.required(request.body, field: "body", max: 20_000)
    message.internal = request.internal
    guard request.attachments.count <= Self.maxAttachments else {
      throw RPCFailure.invalid("attachments", "at most \(Self.maxAttachments) attachments")
    }
    for (index, file) in request.attachments.enumerated() {
      let f = "attachments[\(index)]"
      var clean = Rapport_Support_V1_Attachment()
      clean.name = try Validate.required(file.name, field: "\(f).name", max: 255)
      clean.contentType = try Validate.optional(file.contentType, field: "\(f).content_type", max: 127)
      clean.location = try Validate.required(file.location, field: "\(f).location", max: 2048)
      guard (0...Self.maxAttachmentBytes).contains(file.sizeBytes) else {
        throw RPCFailure.invalid("\(f).size_bytes", "must be between 0 and \(Self.maxAttachmentBytes)")
      }
      clean.sizeBytes = file.sizeBytes
      message.attachments.append(clean)
    }
    let requestID = try Validate.optional(request.requestID, field: "request_id", max: 128)
    let now = clock.now
    let (ticket, outcome) = try await store.change(id, now: now, actor: message.author) { ticket, connection in
      let stored = try await store.insertMessage(
        message, ticketID: ticket.id, requestID: requestID.isEmpty ? nil : requestID, at: now, on: connection)
      guard stored.inserted else { return Decision(extra: (stored.id, true)) }
      return Decision(events: try TicketLifecycle.add(message, to: &ticket, at: now), extra: (stored.id, false))
    }
    let recorded = outcome.0.uuidString.lowercased()
    return .with {
      $0.ticket = ticket.proto
      $0.message = ticket.messages.first { $0.id == recorded } ?? message
      $0.replayed = outcome.1
    }
  }

  func changeTicketStatus(
    request: Rapport_Support_V1_ChangeTicketStatusRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_ChangeTicketStatusResponse {
    let id = try Validate.uuid(request.ticketID, field: "ticket_id")
    let status = try Validate.specified(request.status, field: "status")
    guard status != .new else { throw RPCFailure.invalid("status", "a ticket cannot be moved back to NEW") }
    let actor = try Validate.optional(request.actor, field: "actor", max: 200)
    let now = clock.now
    let (ticket, _) = try await store.change(id, now: now, actor: actor) { ticket, _ in
      Decision(events: try TicketLifecycle.move(&ticket, to: status, at: now))
    }
    return .with { $0.ticket = ticket.proto }
  }

  func rateTicket(
    request: Rapport_Support_V1_RateTicketRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_RateTicketResponse {
    let id = try Validate.uuid(request.ticketID, field: "ticket_id")
    guard (1...5).contains(request.rating) else { throw RPCFailure.invalid("rating", "must be between 1 and 5") }
    let comment = try Validate.optional(request.comment, field: "comment", max: 1000)
    let now = clock.now
    let (ticket, _) = try await store.change(id, now: now) { ticket, _ in
      Decision(events: try TicketLifecycle.rate(&ticket, rating: Int(request.rating), comment: comment, at: now))
    }
    return .with { $0.ticket = ticket.proto }
  }

  func assignTicket(
    request: Rapport_Support_V1_AssignTicketRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_AssignTicketResponse {
    let id = try Validate.uuid(request.ticketID, field: "ticket_id")
    let team = try Validate.optional(request.team, field: "team", max: 64)
    let assignee = try Validate.optional(request.assignee, field: "assignee", max: 200)
    guard !team.isEmpty || !assignee.isEmpty else { throw RPCFailure.invalid("team", "team or assignee is required") }
    let actor = try Validate.optional(request.actor, field: "actor", max: 200)
    let now = clock.now
    let (ticket, _) = try await store.change(id, now: now, actor: actor) { ticket, connection in
      var agent = assignee.isEmpty ? nil : assignee
      // A team alone, new to the ticket or without an agent: a round-robin team picks the agent.
      if agent == nil, !team.isEmpty, ticket.team != team || ticket.assignee == nil {
        agent = try await store.nextAgent(of: team, on: connection)
      }
      return Decision(events: try TicketLifecycle.assign(&ticket, team: team.isEmpty ? nil : team, assignee: agent, at: now))
    }
    return .with { $0.ticket = ticket.proto }
  }

  func getCustomerSupportSummary(
    request: Rapport_Support_V1_GetCustomerSupportSummaryRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_GetCustomerSupportSummaryResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let summary = try await store.summary(customerID: id)
    return .with { $0.summary = summary }
  }

  func getCustomerSupportOverview(
    request: Rapport_Support_V1_GetCustomerSupportOverviewRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_GetCustomerSupportOverviewResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let limit = try Validate.pageSize(request.openTicketLimit, field: "open_ticket_limit", default: 50, max: 50)
    let (summary, tickets) = try await store.overview(customerID: id, limit: limit)
    return .with {
      $0.summary = summary
      $0.openTickets = tickets.map(\.proto)
    }
  }

  func batchGetCustomerSupportOverviews(
    request: Rapport_Support_V1_BatchGetCustomerSupportOverviewsRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_BatchGetCustomerSupportOverviewsResponse {
    let ids = try Validate.uuids(request.customerIds, field: "customer_ids")
    let limit = try Validate.pageSize(request.openTicketLimit, field: "open_ticket_limit", default: 50, max: 50)
    let found = try await store.overviews(customerIDs: Array(Set(ids)), limit: limit)
    let overviews = try inOrder(ids, found) { summary, tickets in
      Rapport_Support_V1_GetCustomerSupportOverviewResponse.with {
        $0.summary = summary
        $0.openTickets = tickets.map(\.proto)
      }
    }
    return .with { $0.overviews = overviews }
  }
}
