import Foundation
import GRPCCore
import Logging
import RapportCore
import RapportProtos

/// `rapport.support.v1.SupportService`: validate → store → proto.
struct SupportRPCs: Rapport_Support_V1_SupportService.SimpleServiceProtocol {
  let store: SupportStore
  let logger: Logger

  func openTicket(
    request: Rapport_Support_V1_OpenTicketRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_OpenTicketResponse {
    try await serving(logger) {
      let requestID = try Validate.optional(request.requestID, field: "request_id", max: 128)
      let customerID = try Validate.uuid(request.customerID, field: "customer_id")
      let subject = try Validate.required(request.subject, field: "subject", max: 200)
      let body = try Validate.required(request.body, field: "body", max: 20_000)
      let priority = try Validate.known(request.priority, field: "priority")
      let channel = try Validate.known(request.channel, field: "channel")
      let ticket = TicketRecord(
        id: UUID(), requestID: requestID.isEmpty ? nil : requestID, customerID: customerID, subject: subject,
        body: body, priority: (priority == .unspecified ? .normal : priority).rawValue,
        status: Rapport_Support_V1_TicketStatus.new.rawValue, channel: channel.rawValue, createdAt: .databaseNow)
      switch try await store.open(ticket, requestBytes: try request.serializedBytes()) {
      case .created(let ticket): return .with { $0.ticket = ticket.proto }
      case .replayed(let ticket):
        return .with {
          $0.ticket = ticket.proto
          $0.replayed = true
        }
      case .requestConflict:
        throw RPCFailure.failedPrecondition("request_id: already used for a different ticket")
      }
    }
  }

  func getTicket(
    request: Rapport_Support_V1_GetTicketRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_GetTicketResponse {
    try await serving(logger) {
      let id = try Validate.uuid(request.ticketID, field: "ticket_id")
      guard let ticket = try await store.get(id: id) else { throw RPCFailure.notFound("ticket", request.ticketID) }
      return .with { $0.ticket = ticket.proto }
    }
  }

  func listTickets(
    request: Rapport_Support_V1_ListTicketsRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_ListTicketsResponse {
    try await serving(logger) {
      var filter = SupportStore.Filter()
      if !request.customerID.isEmpty { filter.customerID = try Validate.uuid(request.customerID, field: "customer_id") }
      filter.onlyOpen = request.onlyOpen
      for (index, status) in request.statuses.enumerated() {
        filter.statuses.append(try Validate.specified(status, field: "statuses[\(index)]").rawValue)
      }
      filter.priority = try Validate.known(request.priority, field: "priority").rawValue
      let team = try Validate.optional(request.team, field: "team", max: 64)
      let assignee = try Validate.optional(request.assignee, field: "assignee", max: 200)
      filter.team = team.isEmpty ? nil : team
      filter.assignee = assignee.isEmpty ? nil : assignee
      filter.createdAfter = try Validate.time(request.createdAfter, isSet: request.hasCreatedAfter, field: "created_after")
      filter.createdBefore = try Validate.time(
        request.createdBefore, isSet: request.hasCreatedBefore, field: "created_before")
      let limit = try Validate.pageSize(request.pageSize)
      let token = try PageToken.decode(request.pageToken)
      let tickets = try await store.list(filter, after: token, limit: limit + 1)
      let page = PageToken.page(tickets, limit: limit) { PageToken(date: $0.createdAt, id: $0.id) }
      return .with {
        $0.tickets = page.rows.map(\.proto)
        $0.nextPageToken = page.nextPageToken
      }
    }
  }
}
