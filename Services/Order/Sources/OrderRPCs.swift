import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportCore
import RapportProtos

/// `rapport.order.v1.OrderService`: validate → (replay | confirm customer → store) → proto.
struct OrderRPCs: Rapport_Order_V1_OrderService.SimpleServiceProtocol {
  /// Lines one order may have.
  static let maxLines = 100
  /// Largest quantity of one line.
  static let maxQuantity: Int64 = 100_000
  /// Largest unit price, in minor units (10^12: far above any real price, far below overflow).
  static let maxUnitPrice: Int64 = 1_000_000_000_000

  let store: OrderStore
  let customers: Rapport_Customer_V1_CustomerService.Client<HTTP2ClientTransport.Posix>
  /// Time allowed for the customer service to confirm a customer.
  let customerTimeout: Duration
  let logger: Logger

  func placeOrder(
    request: Rapport_Order_V1_PlaceOrderRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_PlaceOrderResponse {
    try await serving(logger) {
      let order = try validate(request)
      let requestBytes: [UInt8] = try request.serializedBytes()
      // A replay is answered from the store alone, even while the customer service is down.
      if let earlier = try await store.existing(
        channel: order.channel, key: order.idempotencyKey, requestBytes: requestBytes)
      {
        return try response(earlier)
      }
      var confirmed = order
      confirmed.customerID = try await confirmCustomer(request.customerID)
      return try response(try await store.place(confirmed, requestBytes: requestBytes))
    }
  }

  func getOrder(
    request: Rapport_Order_V1_GetOrderRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_GetOrderResponse {
    try await serving(logger) {
      let id = try Validate.uuid(request.orderID, field: "order_id")
      guard let order = try await store.get(id: id) else { throw RPCFailure.notFound("order", request.orderID) }
      return .with { $0.order = order.proto }
    }
  }

  func listOrders(
    request: Rapport_Order_V1_ListOrdersRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_ListOrdersResponse {
    try await serving(logger) {
      let customerID = try Validate.uuid(request.customerID, field: "customer_id")
      let limit = try Validate.pageSize(request.pageSize)
      let token = try PageToken.decode(request.pageToken)
      let orders = try await store.list(customerID: customerID, after: token, limit: limit + 1)
      let page = PageToken.page(orders, limit: limit) { PageToken(date: $0.createdAt, id: $0.id) }
      return .with {
        $0.orders = page.rows.map(\.proto)
        $0.nextPageToken = page.nextPageToken
      }
    }
  }

  private func response(_ placement: OrderStore.Placement) throws -> Rapport_Order_V1_PlaceOrderResponse {
    switch placement {
    case .created(let order): return .with { $0.order = order.proto }
    case .replayed(let order):
      return .with {
        $0.order = order.proto
        $0.replayed = true
      }
    case .keyConflict:
      throw RPCFailure.failedPrecondition(
        "idempotency_key: already used on this channel for a different request")
    }
  }

  /// The id to store the order under: the customer's, or its survivor's when it was merged. NOT_FOUND
  /// when the customer does not exist, FAILED_PRECONDITION when it was erased, UNAVAILABLE when the
  /// customer service cannot tell in time.
  private func confirmCustomer(_ id: String) async throws -> UUID {
    var options = CallOptions.defaults
    options.timeout = customerTimeout
    let customer: Rapport_Customer_V1_Customer
    do {
      customer = try await customers.getCustomer(.with { $0.customerID = id }, options: options).customer
    } catch let error as RPCError where error.code == .notFound {
      throw RPCFailure.notFound("customer", id)
    } catch {
      logger.warning("customer service could not confirm a customer", metadata: ["error": "\(error)"])
      throw RPCFailure.unavailable("customer service unavailable; the order was not stored, retry later")
    }
    guard customer.state != .erased else { throw RPCFailure.failedPrecondition("customer '\(id)' was erased") }
    guard let canonical = UUID(uuidString: customer.id) else { throw RPCFailure.internal("customer without id") }
    return canonical
  }

  private func validate(_ request: Rapport_Order_V1_PlaceOrderRequest) throws -> OrderRecord {
    let key = try Validate.required(request.idempotencyKey, field: "idempotency_key", max: 128)
    let customerID = try Validate.uuid(request.customerID, field: "customer_id")
    let channel = try Validate.specified(request.channel, field: "channel")
    let currency = try Validate.currency(request.currency)
    guard !request.lines.isEmpty else { throw RPCFailure.invalid("lines", "at least one line is required") }
    guard request.lines.count <= Self.maxLines else {
      throw RPCFailure.invalid("lines", "at most \(Self.maxLines) lines")
    }
    var total: Int64 = 0
    var lines: [Rapport_Order_V1_OrderLine] = []
    for (index, line) in request.lines.enumerated() {
      let field = "lines[\(index)]"
      var clean = line
      clean.sku = try Validate.required(line.sku, field: "\(field).sku", max: 64)
      clean.title = try Validate.optional(line.title, field: "\(field).title", max: 200)
      guard (1...Self.maxQuantity).contains(line.quantity) else {
        throw RPCFailure.invalid("\(field).quantity", "must be between 1 and \(Self.maxQuantity)")
      }
      guard (0...Self.maxUnitPrice).contains(line.unitPriceMinor) else {
        throw RPCFailure.invalid("\(field).unit_price_minor", "must be between 0 and \(Self.maxUnitPrice)")
      }
      let (amount, overflow1) = line.quantity.multipliedReportingOverflow(by: line.unitPriceMinor)
      let (sum, overflow2) = total.addingReportingOverflow(amount)
      guard !overflow1, !overflow2 else { throw RPCFailure.invalid("lines", "order total is too large") }
      total = sum
      lines.append(clean)
    }
    return OrderRecord(
      id: UUID(), customerID: customerID, channel: channel.rawValue, idempotencyKey: key, status: .pending,
      currency: currency, totalMinor: total, createdAt: .databaseNow, lines: lines)
  }
}
