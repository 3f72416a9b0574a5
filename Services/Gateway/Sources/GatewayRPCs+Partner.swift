import Foundation
import GRPCCore
import RapportCore
import RapportProtos

/// Partner reads: forwarded to the owning service under the caller's deadline, then checked against the
/// key's company binding (`visible`): what a bound key may not see answers exactly as a missing one.
extension GatewayRPCs {
  func getCustomer(
    request: ServerRequest<Rapport_Customer_V1_GetCustomerRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Customer_V1_GetCustomerResponse> {
    let response = try await forward(request.metadata) { try await customers.getCustomer(request.message, options: $0) }
    guard Self.visible(response.customer) else { throw RPCFailure.notFound("customer", request.message.customerID) }
    return ServerResponse(message: response)
  }

  func findCustomer(
    request: ServerRequest<Rapport_Customer_V1_FindCustomerRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Customer_V1_FindCustomerResponse> {
    let response = try await forward(request.metadata) { try await customers.findCustomer(request.message, options: $0) }
    guard Self.visible(response.customer) else {
      // The customer service's own message for a missing one.
      throw RPCError(
        code: .notFound, message: request.message.hasIdentity ? "no customer has this identity" : "no customer has this email")
    }
    return ServerResponse(message: response)
  }

  func searchCustomers(
    request: ServerRequest<Rapport_Customer_V1_SearchCustomersRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Customer_V1_SearchCustomersResponse> {
    var search = request.message
    if let companies = Self.boundCompanies {
      if search.companyID.isEmpty {
        guard companies.count == 1, let only = companies.first else {
          throw RPCFailure.invalid("company_id", "is required for a key bound to several companies")
        }
        search.companyID = only
      }
      // Another company's contacts: the empty page of a company without any.
      guard companies.contains(try Validate.uuid(search.companyID, field: "company_id").uuidString.lowercased()) else {
        await HiddenRowFloor.hold()
        return ServerResponse(message: .init())
      }
    }
    var response = try await forward(request.metadata) { try await customers.searchCustomers(search, options: $0) }
    response.customers.removeAll { !Self.visible($0) }
    return ServerResponse(message: response)
  }

  func getOrder(
    request: ServerRequest<Rapport_Order_V1_GetOrderRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Order_V1_GetOrderResponse> {
    let response = try await boundRead(request.metadata) { try await orders.getOrder(request.message, options: $0) }
    guard try await orderVisible(response.order, request.metadata) else {
      throw RPCFailure.notFound("order", request.message.orderID)
    }
    return ServerResponse(message: response)
  }

  func listOrders(
    request: ServerRequest<Rapport_Order_V1_ListOrdersRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Order_V1_ListOrdersResponse> {
    guard try await listable(request.message.customerID, request.metadata) else { return ServerResponse(message: .init()) }
    return ServerResponse(
      message: try await forward(request.metadata) { try await orders.listOrders(request.message, options: $0) })
  }

  func getTicket(
    request: ServerRequest<Rapport_Support_V1_GetTicketRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Support_V1_GetTicketResponse> {
    let response = try await boundRead(request.metadata) { try await support.getTicket(request.message, options: $0) }
    guard try await customerVisible(response.ticket.customerID, request.metadata) else {
      throw RPCFailure.notFound("ticket", request.message.ticketID)
    }
    return ServerResponse(message: response)
  }

  func listTickets(
    request: ServerRequest<Rapport_Support_V1_ListTicketsRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Support_V1_ListTicketsResponse> {
    guard try await listable(request.message.customerID, request.metadata) else { return ServerResponse(message: .init()) }
    return ServerResponse(
      message: try await forward(request.metadata) { try await support.listTickets(request.message, options: $0) })
  }

  // MARK: Writes (audited by PartnerAuth before their response)

  func resolveCustomer(
    request: ServerRequest<Rapport_Customer_V1_ResolveCustomerRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Customer_V1_ResolveCustomerResponse> {
    guard Self.boundCompanies == nil else {
      throw RPCError(code: .permissionDenied, message: "a key bound to companies cannot resolve or create customers")
    }
    let response = try await forward(request.metadata) { try await customers.resolveCustomer(request.message, options: $0) }
    AuditLog.target("customer", response.customer.id)
    return ServerResponse(message: response)
  }

  func placeOrder(
    request: ServerRequest<Rapport_Order_V1_PlaceOrderRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Order_V1_PlaceOrderResponse> {
    let message = request.message
    if let bound = Self.boundCompanies {
      guard !message.customerID.isEmpty else {
        throw RPCFailure.invalid("customer_id", "is required for a key bound to companies")
      }
      if message.hasB2B, !bound.contains(message.b2B.companyID) {
        throw RPCFailure.invalid("b2b.company_id", "must be one of the key's companies")
      }
      _ = try Validate.uuid(message.customerID, field: "customer_id")
      guard try await customerVisible(message.customerID, request.metadata) else {
        throw RPCFailure.notFound("customer", message.customerID)
      }
    }
    AuditLog.target("customer", message.customerID)
    let response = try await forward(request.metadata) { try await orders.placeOrder(message, options: $0) }
    AuditLog.target("order", response.order.id)
    return ServerResponse(message: response)
  }

  func recordPayment(
    request: ServerRequest<Rapport_Order_V1_RecordPaymentRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Order_V1_RecordPaymentResponse> {
    AuditLog.target("order", request.message.orderID)
    try await requireVisibleOrder(request.message.orderID, request.metadata)
    return ServerResponse(
      message: try await forward(request.metadata) { try await orders.recordPayment(request.message, options: $0) })
  }

  func fulfillOrder(
    request: ServerRequest<Rapport_Order_V1_FulfillOrderRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Order_V1_FulfillOrderResponse> {
    AuditLog.target("order", request.message.orderID)
    try await requireVisibleOrder(request.message.orderID, request.metadata)
    return ServerResponse(
      message: try await forward(request.metadata) { try await orders.fulfillOrder(request.message, options: $0) })
  }

  func deliverOrder(
    request: ServerRequest<Rapport_Order_V1_DeliverOrderRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Order_V1_DeliverOrderResponse> {
    AuditLog.target("order", request.message.orderID)
    try await requireVisibleOrder(request.message.orderID, request.metadata)
    return ServerResponse(
      message: try await forward(request.metadata) { try await orders.deliverOrder(request.message, options: $0) })
  }

  func openTicket(
    request: ServerRequest<Rapport_Support_V1_OpenTicketRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Support_V1_OpenTicketResponse> {
    if Self.boundCompanies != nil {
      let customer = try Validate.uuid(request.message.customerID, field: "customer_id").uuidString.lowercased()
      guard try await customerVisible(customer, request.metadata) else {
        throw RPCFailure.notFound("customer", request.message.customerID)
      }
    }
    AuditLog.target("customer", request.message.customerID)
    let response = try await forward(request.metadata) { try await support.openTicket(request.message, options: $0) }
    AuditLog.target("ticket", response.ticket.id)
    return ServerResponse(message: response)
  }

  func addMessage(
    request: ServerRequest<Rapport_Support_V1_AddMessageRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Support_V1_AddMessageResponse> {
    AuditLog.target("ticket", request.message.ticketID)
    if Self.boundCompanies != nil {
      let id = request.message.ticketID
      let ticket = try await boundRead(request.metadata) { try await support.getTicket(.with { $0.ticketID = id }, options: $0).ticket }
      guard try await customerVisible(ticket.customerID, request.metadata) else { throw RPCFailure.notFound("ticket", id) }
    }
    return ServerResponse(
      message: try await forward(request.metadata) { try await support.addMessage(request.message, options: $0) })
  }

  /// For a bound key: the order exists and is visible (as GetOrder decides), else NOT_FOUND as for a
  /// missing one. Nothing for unbound keys.
  private func requireVisibleOrder(_ id: String, _ metadata: Metadata) async throws {
    guard Self.boundCompanies != nil else { return }
    let order = try await boundRead(metadata) { try await orders.getOrder(.with { $0.orderID = id }, options: $0).order }
    guard try await orderVisible(order, metadata) else { throw RPCFailure.notFound("order", id) }
  }

  /// `forward`, plus for a bound key: a row the owning service does not have still costs the customer
  /// check that another company's row costs, so response times do not tell a missing row from an
  /// invisible one in the number of upstream calls (`HiddenRowFloor` hides what remains).
  private func boundRead<Response: Sendable>(
    _ metadata: Metadata, _ call: (CallOptions) async throws -> Response
  ) async throws -> Response {
    do {
      return try await forward(metadata, call)
    } catch let error as RPCError where error.code == .notFound && Self.boundCompanies != nil {
      _ = try? await customerVisible(Self.noCustomer, metadata)
      throw error
    }
  }

  /// A customer id no customer has.
  static let noCustomer = "00000000-0000-0000-0000-000000000000"

  /// A bound key sees its companies' B2B orders and its companies' contacts' orders.
  private func orderVisible(_ order: Rapport_Order_V1_Order, _ metadata: Metadata) async throws -> Bool {
    guard let bound = Self.boundCompanies else { return true }
    if !order.b2B.companyID.isEmpty, bound.contains(order.b2B.companyID) { return true }
    return try await customerVisible(order.customerID, metadata)
  }

  /// The company ids the caller's key is bound to; nil for unbound keys and anonymous calls.
  static var boundCompanies: Set<String>? {
    guard let key = CallerKey.current, !key.companyIDs.isEmpty else { return nil }
    return Set(key.companyIDs.map { $0.uuidString.lowercased() })
  }

  /// Whether a bound key may see this customer's rows (always, for unbound keys): the customer service
  /// says which companies the customer is a contact of; a customer it does not know is not visible.
  private func customerVisible(_ id: String, _ metadata: Metadata) async throws -> Bool {
    guard Self.boundCompanies != nil else { return true }
    do {
      let customer = try await forward(metadata) {
        try await customers.getCustomer(.with { $0.customerID = id }, options: $0).customer
      }
      return Self.visible(customer)
    } catch let error as RPCError where error.code == .notFound {
      return false
    }
  }

  /// Whether a list may be forwarded: bound keys must name a customer (INVALID_ARGUMENT otherwise) and
  /// get an empty list for one they may not see — what a customer without rows gets, held to the
  /// hidden-row floor before it is answered.
  private func listable(_ customerID: String, _ metadata: Metadata) async throws -> Bool {
    guard Self.boundCompanies != nil else { return true }
    guard !customerID.isEmpty else {
      throw RPCFailure.invalid("customer_id", "is required for a key bound to companies")
    }
    _ = try Validate.uuid(customerID, field: "customer_id")
    guard try await customerVisible(customerID, metadata) else {
      await HiddenRowFloor.hold()
      return false
    }
    return true
  }

  /// Calls an owning service with the caller's remaining deadline (capped like a view's), never waiting
  /// for a connection. Its errors pass through with their status, message and details only (no
  /// upstream metadata such as its request id).
  private func forward<Response: Sendable>(
    _ metadata: Metadata, _ call: (CallOptions) async throws -> Response
  ) async throws -> Response {
    var options = CallOptions.defaults
    options.timeout = CallBudget(metadata: metadata, default: defaultBudget, maximum: maximumBudget).remaining()
    options.waitForReady = false
    do {
      return try await call(options)
    } catch let error as RPCError {
      var kept = Metadata()
      for value in error.metadata[binaryValues: "grpc-status-details-bin"] { kept.addBinary(value, forKey: "grpc-status-details-bin") }
      throw RPCError(code: error.code, message: error.message, metadata: kept)
    }
  }
}
