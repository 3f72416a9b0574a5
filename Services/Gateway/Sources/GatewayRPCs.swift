import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportCore
import RapportProtos
import SwiftProtobuf
import Synchronization

/// `rapport.gateway.v1.PartnerGateway`: composes the 360° view from the four services, in parallel, each
/// under the caller's remaining deadline. It holds no copy of the data.
struct GatewayRPCs: Rapport_Gateway_V1_PartnerGateway.ServiceProtocol {
  let customers: Rapport_Customer_V1_CustomerService.Client<HTTP2ClientTransport.Posix>
  let orders: Rapport_Order_V1_OrderService.Client<HTTP2ClientTransport.Posix>
  let support: Rapport_Support_V1_SupportService.Client<HTTP2ClientTransport.Posix>
  let analytics: Rapport_Analytics_V1_AnalyticsService.Client<HTTP2ClientTransport.Posix>
  /// Budget when the caller sent no deadline, and the most any view may take.
  let defaultBudget: Duration
  let maximumBudget: Duration
  let logger: Logger

  func getCustomerView(
    request: ServerRequest<Rapport_Gateway_V1_GetCustomerViewRequest>, context: ServerContext
  ) async throws -> ServerResponse<Rapport_Gateway_V1_GetCustomerViewResponse> {
    let budget = CallBudget(metadata: request.metadata, default: defaultBudget, maximum: maximumBudget)
    logger.debug("view budget", metadata: ["remaining": "\(budget.remaining())"])
    let view = try await view(for: request.message, budget: budget)
    return ServerResponse(message: .with { $0.view = view })
  }

  /// Resolves the customer the request names and composes the view.
  private func view(
    for message: Rapport_Gateway_V1_GetCustomerViewRequest, budget: CallBudget
  ) async throws -> Rapport_Gateway_V1_CustomerView {
    let limit = try Validate.pageSize(message.recentOrderLimit, field: "recent_order_limit", default: 10, max: 50)
    switch message.customer {
    case .customerID(let raw):
      let id = try Validate.uuid(raw, field: "customer_id")
      return try await compose(id: id.uuidString.lowercased(), known: nil, limit: limit, budget: budget)
    case .email(let raw):
      let email = try Validate.email(raw)
      let found = try await section("customer", budget) {
        try await customers.findCustomer(.with { $0.email = email }, options: $0).customer
      }
      guard let customer = found.value else { throw resolutionFailure(found.status) }
      return try await compose(id: customer.id, known: found, limit: limit, budget: budget)
    case nil:
      throw RPCFailure.invalid("customer", "customer_id or email is required")
    }
  }

  /// Fills every section in parallel; `known` is the customer section when resolution already read it.
  private func compose(
    id: String, known: SectionResult<Rapport_Customer_V1_Customer>?, limit: Int, budget: CallBudget
  ) async throws -> Rapport_Gateway_V1_CustomerView {
    async let customerSection = customerSection(id: id, known: known, budget: budget)
    async let orderSection = section("orders", budget) {
      try await orders.listOrders(.with {
        $0.customerID = id
        $0.pageSize = Int32(limit)
      }, options: $0).orders
    }
    async let ticketSection = section("tickets", budget) {
      try await support.listTickets(.with {
        $0.customerID = id
        $0.onlyOpen = true
        $0.pageSize = 50
      }, options: $0).tickets
    }
    async let metricSection = section("metrics", budget) {
      try await analytics.getCustomerMetrics(.with { $0.customerID = id }, options: $0).metrics
    }
    async let summarySection = section("order_summary", budget) {
      try await orders.getCustomerOrderSummary(.with { $0.customerID = id }, options: $0).summary
    }
    async let supportSection = section("support_summary", budget) {
      try await support.getCustomerSupportSummary(.with { $0.customerID = id }, options: $0).summary
    }
    let (customer, recent, tickets, metrics, summary, supportSummary) = await (
      customerSection, orderSection, ticketSection, metricSection, summarySection, supportSection
    )
    if customer.status.code == RPCError.Code.notFound.rawValue { throw RPCFailure.notFound("customer", id) }
    // A merged id resolved to its survivor: the other services hold the rows under the survivor's id.
    if let survivor = customer.value, survivor.id != id {
      return try await compose(id: survivor.id, known: customer, limit: limit, budget: budget)
    }
    var view = Rapport_Gateway_V1_CustomerView()
    if let value = customer.value { view.customer = value }
    view.recentOrders = recent.value ?? []
    view.openTickets = tickets.value ?? []
    if let value = metrics.value { view.metrics = value }
    if let value = summary.value { view.orderSummary = value }
    if let value = supportSummary.value { view.supportSummary = value }
    view.sections = [
      customer.status, recent.status, tickets.status, metrics.status, summary.status, supportSummary.status,
    ]
    return view
  }

  private func customerSection(
    id: String, known: SectionResult<Rapport_Customer_V1_Customer>?, budget: CallBudget
  ) async -> SectionResult<Rapport_Customer_V1_Customer> {
    if let known { return known }
    return await section("customer", budget) {
      try await customers.getCustomer(.with { $0.customerID = id }, options: $0).customer
    }
  }

  /// Calls one service under the remaining budget; never throws: a failure becomes the section's status.
  /// The budget is enforced here as well as by the call's timeout, because a call still waiting for its
  /// connection (a peer that accepts TCP and never answers) is not bound by the RPC timeout.
  private func section<Value: Sendable>(
    _ name: String, _ budget: CallBudget, _ call: @escaping @Sendable (CallOptions) async throws -> Value
  ) async -> SectionResult<Value> {
    var options = CallOptions.defaults
    let limit = budget.remaining()
    options.timeout = limit
    options.waitForReady = false
    let outcome = await firstOf(within: limit) { [options] in try await call(options) }
    var status = Rapport_Gateway_V1_Section()
    status.name = name
    switch outcome {
    case .success(let value):
      status.code = 0
      status.asOf = Google_Protobuf_Timestamp(microsecondsOf: Date())
      return SectionResult(value: value, status: status)
    case .failure(let error as RPCError):
      status.code = Int32(error.code.rawValue)
      status.message = Self.safeMessage(name, error.code)
      if error.code != .notFound && error.code != .invalidArgument {
        logger.warning("view section failed", metadata: ["section": "\(name)", "code": "\(error.code)"])
      }
      return SectionResult(value: nil, status: status)
    case .failure:
      status.code = Int32(RPCError.Code.unknown.rawValue)
      status.message = "\(name) could not be read"
      return SectionResult(value: nil, status: status)
    }
  }

  /// A section message that says what happened without any service internals.
  static func safeMessage(_ name: String, _ code: RPCError.Code) -> String {
    switch code {
    case .deadlineExceeded: "\(name) did not answer within the deadline"
    case .unavailable: "\(name) is unavailable"
    case .permissionDenied: "not permitted to read \(name)"
    case .notFound: "\(name) not found"
    default: "\(name) could not be read"
    }
  }

  /// Why a customer could not be resolved by email, as the status of the whole view.
  private func resolutionFailure(_ status: Rapport_Gateway_V1_Section) -> RPCError {
    switch Int(status.code) {
    case RPCError.Code.notFound.rawValue: RPCError(code: .notFound, message: "no customer has this email")
    case RPCError.Code.deadlineExceeded.rawValue:
      RPCError(code: .deadlineExceeded, message: "customer lookup did not finish in time")
    default: RPCError(code: .unavailable, message: "customer service unavailable; retry later")
    }
  }
}

/// The result of `body`, or DEADLINE_EXCEEDED once `limit` passes — whichever comes first. The loser is
/// cancelled but not awaited: a call stuck connecting to a silent peer may take a while to notice its
/// cancellation, and the view must not wait for that (a task group would).
func firstOf<Value: Sendable>(
  within limit: Duration, _ body: @escaping @Sendable () async throws -> Value
) async -> Result<Value, any Error> {
  let slot = Mutex<CheckedContinuation<Result<Value, any Error>, Never>?>(nil)
  let finish: @Sendable (Result<Value, any Error>) -> Void = { result in
    slot.withLock { continuation -> CheckedContinuation<Result<Value, any Error>, Never>? in
      defer { continuation = nil }
      return continuation
    }?.resume(returning: result)
  }
  return await withCheckedContinuation { continuation in
    slot.withLock { $0 = continuation }
    let work = Task {
      do { finish(.success(try await body())) } catch { finish(.failure(error)) }
    }
    let timer = Task {
      do { try await Task.sleep(for: limit) } catch { return }  // cancelled: the call answered first
      work.cancel()
      finish(.failure(RPCError(code: .deadlineExceeded, message: "deadline")))
    }
    Task {
      _ = await work.value
      timer.cancel()
    }
  }
}

/// One section's value (nil when the call failed) and its status entry.
struct SectionResult<Value: Sendable>: Sendable {
  let value: Value?
  let status: Rapport_Gateway_V1_Section
}
