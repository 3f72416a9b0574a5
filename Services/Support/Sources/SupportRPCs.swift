import Foundation
import GRPCCore
import Logging
import RapportCore
import RapportProtos

/// `rapport.support.v1.SupportService`: validate → store → proto.
struct SupportRPCs: Rapport_Support_V1_SupportService.SimpleServiceProtocol {
  let store: SupportStore
  let directory: SupportDirectory
  let clock: WallClock
  let logger: Logger

  /// Tags a ticket may carry.
  static let maxTags = 20

  func openTicket(
    request: Rapport_Support_V1_OpenTicketRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_OpenTicketResponse {
    let requestID = try Validate.optional(request.requestID, field: "request_id", max: 128)
    let customerID = try Validate.uuid(request.customerID, field: "customer_id")
    let subject = try Validate.required(request.subject, field: "subject", max: 200)
    let body = try Validate.required(request.body, field: "body", max: 20_000)
    let priority = try Validate.known(request.priority, field: "priority")
    let channel = try Validate.known(request.channel, field: "channel")
    let orderID = try request.orderID.isEmpty ? nil : Validate.uuid(request.orderID, field: "order_id")
    let team = try Validate.optional(request.team, field: "team", max: 64)
    let tags = try Validate.tags(request.tags, field: "tags", max: Self.maxTags)
    let messageID = try Validate.optional(request.channelMessageID, field: "channel_message_id", max: 256)
    let customer = try await directory.customer(customerID)
    if let orderID { try await directory.confirm(order: orderID, of: [customerID, customer.id]) }
    var ticket = TicketRecord(
      id: UUID(), requestID: requestID.isEmpty ? nil : requestID, customerID: customer.id, subject: subject,
      body: body, priority: (priority == .unspecified ? .normal : priority).rawValue,
      status: Rapport_Support_V1_TicketStatus.new.rawValue, channel: channel.rawValue, createdAt: clock.now)
    ticket.orderID = orderID
    ticket.team = team.isEmpty ? nil : team
    ticket.tags = tags
    ticket.customerTier = customer.tier
    ticket.channelMessageID = messageID.isEmpty ? nil : messageID
    switch try await store.open(ticket, requestBytes: try request.serializedBytes()) {
    case .created(let ticket): return .with { $0.ticket = ticket.proto }
    case .replayed(let ticket):
      return .with {
        $0.ticket = ticket.proto
        $0.replayed = true
      }
    case .requestConflict:
      throw RPCFailure.failedPrecondition("request_id or channel_message_id: already used for a different ticket")
    }
  }

  func getTicket(
    request: Rapport_Support_V1_GetTicketRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_GetTicketResponse {
    let id = try Validate.uuid(request.ticketID, field: "ticket_id")
    guard let ticket = try await store.get(id: id) else { throw RPCFailure.notFound("ticket", request.ticketID) }
    return .with { $0.ticket = ticket.proto }
  }

  func listTickets(
    request: Rapport_Support_V1_ListTicketsRequest, context: ServerContext
  ) async throws -> Rapport_Support_V1_ListTicketsResponse {
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
    filter.onlyBreached = request.onlyBreached
    if !request.tag.isEmpty { filter.tag = try Validate.tag(request.tag, field: "tag") }
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
