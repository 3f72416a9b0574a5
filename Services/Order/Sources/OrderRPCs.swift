import Foundation
import GRPCCore
import Logging
import RapportCore
import RapportProtos

/// `rapport.order.v1.OrderService`: validate → (replay | confirm customer → store) → proto.
struct OrderRPCs: Rapport_Order_V1_OrderService.SimpleServiceProtocol {
  let store: OrderStore
  let customers: CustomerDirectory
  let clock: WallClock
  let logger: Logger

  func placeOrder(
    request: Rapport_Order_V1_PlaceOrderRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_PlaceOrderResponse {
    let draft = try OrderInput.draft(request)
    let bytes: [UInt8] = try request.serializedBytes()
    let channel = draft.channel.rawValue
    // When placing needs the customer service, a replay is answered first, from the store alone, so it
    // succeeds even while the customer service is down. (With a customer id the insert itself detects
    // a replay.)
    var needsLookup = draft.company != nil
    if case .identities = draft.customer { needsLookup = true }
    if needsLookup, let earlier = try await store.existing(channel: channel, key: draft.key, requestBytes: bytes) {
      return try response(earlier)
    }
    let now = clock.now
    let (customerID, terms) = try await customerAndTerms(draft, at: now)
    let order = OrderRecord(draft, customerID: customerID, terms: terms, now: now)
    return try response(try await place(order, draft: draft, requestBytes: bytes) { ($0, self.placementEvents($0)) })
  }

  /// The customer an order is for (resolved by identity, and remembered, when not given by id) and its
  /// B2B terms, due `net` days after `now`.
  func customerAndTerms(
    _ draft: OrderDraft, at now: Date, resolved: ResolvedCustomers? = nil
  ) async throws -> (UUID, OrderRecord.Terms?) {
    var customerID: UUID
    switch draft.customer {
    case .id(let id): customerID = id
    case .identities(let identities):
      let name = draft.billingAddress ?? draft.shippingAddress
      let key = "\(draft.channel.rawValue)|\(name?.name ?? "")|" + identities.map { "\($0.kind.rawValue):\($0.value)" }.joined(separator: "|")
      if let known = resolved?.id(for: key) {
        customerID = known
      } else {
        customerID = try await customers.resolve(identities, channel: draft.channel, name: name)
        try await store.remember(customerID, as: .active, at: clock.now)
        resolved?.remember(customerID, for: key)
      }
    }
    var terms: OrderRecord.Terms?
    if let company = draft.company {
      // The company must exist even when the request states its own terms.
      let companyTerms = try await customers.paymentTerms(company: company.id)
      try await customers.confirmContact(customerID, of: company.id)
      let net = company.netDays ?? companyTerms
      terms = .init(
        companyID: company.id, purchaseOrderNumber: company.purchaseOrderNumber, netDays: net,
        dueAt: now.addingTimeInterval(Double(net) * 86_400))
    }
    return (customerID, terms)
  }

  /// Stores the order `prepare` makes of the placed `order`, with the events it returns; when the
  /// customer turns out merged, for the survivor instead. Never `.customerNotActive` nor a cart outcome.
  func place(
    _ order: OrderRecord, draft: OrderDraft, requestBytes bytes: [UInt8],
    prepare: (OrderRecord) throws -> (OrderRecord, [Rapport_Events_V1_Event])
  ) async throws -> OrderStore.Placement {
    var order = order
    for _ in 0..<4 {
      let (stored, events) = try prepare(order)
      switch try await store.place(stored, requestBytes: bytes, events: events) {
      case .customerNotActive:
        order.customerID = try await activeCustomer(order.customerID)
      case .cartMissing:
        throw RPCFailure.notFound("cart", draft.cartID ?? "")
      case .cartConverted(let other):
        throw RPCFailure.failedPrecondition("cart_id: the cart was already converted to order \(other.uuidString.lowercased())")
      case let placement:
        return placement
      }
    }
    throw RPCFailure.unavailable("the order could not be stored; retry")
  }

  func getOrder(
    request: Rapport_Order_V1_GetOrderRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_GetOrderResponse {
    let id = try Validate.uuid(request.orderID, field: "order_id")
    guard let order = try await store.get(id: id, full: true) else { throw RPCFailure.notFound("order", request.orderID) }
    return .with { $0.order = order.proto }
  }

  func listOrders(
    request: Rapport_Order_V1_ListOrdersRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_ListOrdersResponse {
    var filter = OrderStore.Filter()
    if !request.customerID.isEmpty { filter.customerID = try Validate.uuid(request.customerID, field: "customer_id") }
    for (index, status) in request.statuses.enumerated() {
      filter.statuses.append(try Validate.specified(status, field: "statuses[\(index)]").rawValue)
    }
    filter.channel = try Validate.known(request.channel, field: "channel").rawValue
    filter.createdAfter = try Validate.time(request.createdAfter, isSet: request.hasCreatedAfter, field: "created_after")
    filter.createdBefore = try Validate.time(
      request.createdBefore, isSet: request.hasCreatedBefore, field: "created_before")
    let limit = try Validate.pageSize(request.pageSize)
    let token = try PageToken.decode(request.pageToken)
    let orders = try await store.list(filter, after: token, limit: limit + 1)
    let page = PageToken.page(orders, limit: limit) { PageToken(date: $0.createdAt, id: $0.id) }
    return .with {
      $0.orders = page.rows.map(\.proto)
      $0.nextPageToken = page.nextPageToken
    }
  }

  func getCustomerOrderSummary(
    request: Rapport_Order_V1_GetCustomerOrderSummaryRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_GetCustomerOrderSummaryResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let summary = try await store.summary(customerID: id)
    return .with { $0.summary = summary }
  }

  func getCustomerOrderOverview(
    request: Rapport_Order_V1_GetCustomerOrderOverviewRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_GetCustomerOrderOverviewResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let limit = try Validate.pageSize(request.recentOrderLimit, field: "recent_order_limit", default: 10, max: 50)
    let (summary, orders) = try await store.overview(customerID: id, limit: limit)
    return .with {
      $0.summary = summary
      $0.recentOrders = orders.map(\.proto)
    }
  }

  func batchGetCustomerOrderOverviews(
    request: Rapport_Order_V1_BatchGetCustomerOrderOverviewsRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_BatchGetCustomerOrderOverviewsResponse {
    let ids = try Validate.uuids(request.customerIds, field: "customer_ids")
    let limit = try Validate.pageSize(request.recentOrderLimit, field: "recent_order_limit", default: 10, max: 50)
    let found = try await store.overviews(customerIDs: Array(Set(ids)), limit: limit)
    let overviews = try inOrder(ids, found) { summary, orders in
      Rapport_Order_V1_GetCustomerOrderOverviewResponse.with {
        $0.summary = summary
        $0.recentOrders = orders.map(\.proto)
      }
    }
    return .with { $0.overviews = overviews }
  }

  /// The id to store a customer's rows under, as this service knows it or as the customer service
  /// confirms it: the survivor of a merge; FAILED_PRECONDITION when erased; NOT_FOUND when unknown;
  /// UNAVAILABLE when the customer service cannot tell in time.
  func activeCustomer(_ id: UUID, hops: Int = 0) async throws -> UUID {
    let raw = id.uuidString.lowercased()
    switch try await store.customerRef(id) {
    case .active?:
      return id
    case .merged(let survivor)? where hops < 8:
      return try await activeCustomer(survivor, hops: hops + 1)
    case .erased?:
      throw RPCFailure.failedPrecondition("customer '\(raw)' was erased")
    case .merged?, nil:
      switch try await customers.confirm(id) {
      case .erased:
        try await store.remember(id, as: .erased, at: clock.now)
        throw RPCFailure.failedPrecondition("customer '\(raw)' was erased")
      case .active(let canonical):
        try await store.remember(canonical, as: .active, at: clock.now)
        return canonical
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
    default:
      throw RPCFailure.failedPrecondition("idempotency_key: already used on this channel for a different request")
    }
  }

  /// `OrderPlaced`, `OrderPaid` for an order with nothing to pay, and `CartRecovered` (published only if
  /// the converted cart had been marked abandoned).
  func placementEvents(_ order: OrderRecord) -> [Rapport_Events_V1_Event] {
    let proto = order.proto
    var payloads: [Rapport_Events_V1_Event.OneOf_Payload] = [
      .orderPlaced(.with {
        $0.orderID = proto.id
        $0.customerID = proto.customerID
        $0.channel = proto.channel
        $0.total = proto.total
        $0.lineCount = Int32(order.lines.count)
        $0.placedAt = proto.createTime
        $0.lines = proto.lines
        $0.subtotal = proto.subtotal
        $0.discountTotal = proto.discountTotal
        $0.taxTotal = proto.taxTotal
        $0.shipping = proto.shipping
        $0.channelOrderReference = proto.channelOrderReference
        $0.companyID = proto.b2B.companyID
        $0.purchaseOrderNumber = proto.b2B.purchaseOrderNumber
        if proto.hasPaymentDueTime { $0.paymentDueTime = proto.paymentDueTime }
        $0.cartID = proto.cartID
      })
    ]
    if order.status == .paid { payloads.append(OrderLifecycle.paid(order, at: order.createdAt)) }
    if let cart = order.cartID {
      payloads.append(.cartRecovered(.with {
        $0.cartID = cart
        $0.channel = proto.channel
        $0.customerID = proto.customerID
        $0.orderID = proto.id
        $0.recoveredAt = proto.createTime
      }))
    }
    return payloads.map { Outbox.event(aggregateType: "order", aggregateID: proto.id, occurredAt: order.createdAt, $0) }
  }
}

extension OrderRecord {
  /// A new order from a validated request: PENDING, or PAID when there is nothing to pay.
  init(_ draft: OrderDraft, customerID: UUID, terms: Terms?, now: Date) {
    self.init(
      id: UUID(), customerID: customerID, channel: draft.channel.rawValue, idempotencyKey: draft.key,
      status: draft.amounts.total == 0 ? .paid : .pending, currency: draft.currency, createdAt: now)
    lines = draft.lines
    amounts = draft.amounts
    channelOrderReference = draft.channelOrderReference
    shippingAddress = draft.shippingAddress
    billingAddress = draft.billingAddress
    self.terms = terms
    cartID = draft.cartID
    history = [
      .with {
        $0.from = .unspecified
        $0.to = status
        $0.changeTime = .init(microsecondsOf: now)
        $0.actor = "shop"
        $0.reason = "placed"
      }
    ]
  }
}
