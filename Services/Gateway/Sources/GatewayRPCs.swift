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
  /// The view's reads, batched under load.
  let reads: ViewReads
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
      let id = try Validate.uuid(raw, field: "customer_id").uuidString.lowercased()
      let view = try await compose(id: id, known: nil, limit: limit, budget: budget)
      if CallerKey.current?.companyIDs.isEmpty == false {
        // A bound key's view needs the customer's company links: without them nothing may be shown.
        guard view.sections.first?.code == 0 else {
          throw RPCError(code: .unavailable, message: "customer service unavailable; retry later")
        }
        guard Self.visible(view.customer) else { throw RPCFailure.notFound("customer", id) }
      }
      return view
    case .email(let raw):
      let email = try Validate.email(raw)
      let lookup = Upcall { try await customers.findCustomer(.with { $0.email = email }, options: $0).customer }
      await fanOut(budget, [lookup.run])
      let found = section("customer", lookup.outcome())
      guard let customer = found.value else { throw resolutionFailure(found.status) }
      guard Self.visible(customer) else { throw RPCError(code: .notFound, message: "no customer has this email") }
      return try await compose(id: customer.id, known: found, limit: limit, budget: budget)
    case nil:
      throw RPCFailure.invalid("customer", "customer_id or email is required")
    }
  }

  /// Object-level authorisation: a key bound to companies sees only their contacts; to it, any other
  /// customer answers exactly as one that does not exist (NOT_FOUND, the same message). Unbound keys and
  /// anonymous calls (partner auth off) see every customer.
  static func visible(_ customer: Rapport_Customer_V1_Customer) -> Bool {
    guard let key = CallerKey.current, !key.companyIDs.isEmpty else { return true }
    let bound = Set(key.companyIDs.map { $0.uuidString.lowercased() })
    return customer.companies.contains { bound.contains($0.companyID) }
  }

  /// Asks each service once, all in parallel (the customer service only when resolution has not already
  /// read the customer: `known`), and composes the sections.
  private func compose(
    id: String, known: SectionResult<Rapport_Customer_V1_Customer>?, limit: Int, budget: CallBudget
  ) async throws -> Rapport_Gateway_V1_CustomerView {
    let key = ViewReads.Key(id: id, limit: limit, deadline: .now + budget.remaining())
    let reads = reads
    let customerCall = Upcall { _ in
      guard let found = try await reads.customer.load(key), found.hasCustomer else { throw RPCFailure.notFound("customer", id) }
      return found.customer
    }
    let orderCall = Upcall { _ in try ViewReads.value(try await reads.orders.load(key), "orders") }
    let supportCall = Upcall { _ in try ViewReads.value(try await reads.support.load(key), "tickets") }
    let metricCall = Upcall { _ in try ViewReads.value(try await reads.metrics.load(key), "metrics") }
    await fanOut(budget, (known == nil ? [customerCall.run] : []) + [orderCall.run, supportCall.run, metricCall.run])

    let customer = known ?? section("customer", customerCall.outcome())
    if customer.status.code == RPCError.Code.notFound.rawValue { throw RPCFailure.notFound("customer", id) }
    // A merged id resolved to its survivor: the other services hold the rows under the survivor's id.
    if let survivor = customer.value, survivor.id != id {
      return try await compose(id: survivor.id, known: customer, limit: limit, budget: budget)
    }
    let orderOverview = orderCall.outcome(), supportOverview = supportCall.outcome()
    let recent = section("orders", orderOverview.map(\.recentOrders))
    let tickets = section("tickets", supportOverview.map(\.openTickets))
    let metrics = section("metrics", metricCall.outcome())
    let summary = section("order_summary", orderOverview.map(\.summary), logged: false)
    let supportSummary = section("support_summary", supportOverview.map(\.summary), logged: false)
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

  /// Runs the calls under the remaining budget (as each call's timeout, and as a limit on the wait).
  private func fanOut(_ budget: CallBudget, _ calls: [@Sendable (CallOptions) async -> Void]) async {
    var options = CallOptions.defaults
    let limit = budget.remaining()
    options.timeout = limit
    options.waitForReady = false
    await RapportCore.fanOut(within: limit, calls.map { call in { [options] in await call(options) } })
  }

  /// A call's outcome as a section: never throws; a failure becomes the section's status. `logged: false`
  /// for the second section of one call (its failure was logged with the first).
  private func section<Value: Sendable>(
    _ name: String, _ outcome: Result<Value, any Error>, logged: Bool = true
  ) -> SectionResult<Value> {
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
      if logged, error.code != .notFound, error.code != .invalidArgument {
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

/// One upstream call of a view: run once by `fanOut`, read once it returns. A call that has not
/// finished by then reads as DEADLINE_EXCEEDED.
final class Upcall<Value: Sendable>: Sendable {
  private let body: @Sendable (CallOptions) async throws -> Value
  private let result = Mutex<Result<Value, any Error>?>(nil)

  init(_ body: @escaping @Sendable (CallOptions) async throws -> Value) { self.body = body }

  @Sendable func run(_ options: CallOptions) async {
    let outcome: Result<Value, any Error>
    do {
      outcome = .success(try await body(options))
    } catch where Task.isCancelled {
      // Cancelled by `fanOut` when the view's budget ran out: the section missed the deadline, however
      // the transport chose to report the cancellation.
      outcome = .failure(RPCError(code: .deadlineExceeded, message: "deadline"))
    } catch {
      outcome = .failure(error)
    }
    result.withLock { $0 = outcome }
  }

  func outcome() -> Result<Value, any Error> {
    result.withLock { $0 } ?? .failure(RPCError(code: .deadlineExceeded, message: "deadline"))
  }
}

/// One section's value (nil when the call failed) and its status entry.
struct SectionResult<Value: Sendable>: Sendable {
  let value: Value?
  let status: Rapport_Gateway_V1_Section
}
