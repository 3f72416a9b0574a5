import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// A cart as stored, with its lines.
struct CartRecord: Sendable {
  var channel: Int
  var cartID: String
  var customerID: UUID?
  var anonymousID: String?
  var currency: String
  var totalMinor: Int64
  var createdAt: Date
  var updatedAt: Date
  var abandonedAt: Date?
  var orderID: UUID?
  var lines: [Rapport_Order_V1_OrderLine] = []

  var proto: Rapport_Order_V1_Cart {
    .with {
      $0.cartID = cartID
      $0.channel = .init(rawValue: channel) ?? .unspecified
      $0.customerID = customerID?.uuidString.lowercased() ?? ""
      $0.anonymousID = anonymousID ?? ""
      $0.currency = currency
      $0.lines = lines
      $0.total = money
      $0.state = orderID != nil ? .converted : abandonedAt != nil ? .abandoned : .active
      $0.orderID = orderID?.uuidString.lowercased() ?? ""
      $0.createTime = .init(microsecondsOf: createdAt)
      $0.updateTime = .init(microsecondsOf: updatedAt)
      if let abandonedAt { $0.abandonTime = .init(microsecondsOf: abandonedAt) }
    }
  }

  var money: Rapport_Common_V1_Money {
    .with {
      $0.amountMinor = totalMinor
      $0.currency = currency
    }
  }

  /// The columns `init(row:)` reads, in its order (it reads by position).
  static let columns =
    "channel, cart_id, customer_id, anonymous_id, currency, total_minor, created_at, updated_at, abandoned_at, order_id"

}

extension CartRecord {
  init(row: PostgresRow) throws {
    var r = RowReader(row)
    self.init(
      channel: try r.next(), cartID: try r.next(), customerID: try r.next(), anonymousID: try r.next(),
      currency: try r.next(), totalMinor: try r.next(), createdAt: try r.next(), updatedAt: try r.next(),
      abandonedAt: try r.next(), orderID: try r.next())
  }
}

extension OrderStore {
  /// Rows one scan transaction marks at most.
  static let scanBatch = 200

  /// Creates the cart or replaces its lines, currency and total; a known customer or anonymous id is kept
  /// when the update names none. FAILED_PRECONDITION once the cart became an order.
  func upsertCart(_ cart: CartRecord) async throws -> CartRecord {
    try await client.transaction(logger: logger) { connection in
      let existing = try await connection.query(
        "SELECT order_id FROM orders.carts WHERE channel = \(cart.channel) AND cart_id = \(cart.cartID) FOR UPDATE",
        logger: logger)
      for try await converted in existing.decode(UUID?.self) {
        if let converted {
          throw RPCFailure.failedPrecondition("cart was converted to order \(converted.uuidString.lowercased())")
        }
      }
      try await connection.query(
        """
        INSERT INTO orders.carts (channel, cart_id, customer_id, anonymous_id, currency, total_minor, created_at, updated_at)
        VALUES (\(cart.channel), \(cart.cartID), \(cart.customerID), \(cart.anonymousID), \(cart.currency),
                \(cart.totalMinor), \(cart.updatedAt), \(cart.updatedAt))
        ON CONFLICT (channel, cart_id) DO UPDATE SET
          customer_id = coalesce(EXCLUDED.customer_id, carts.customer_id),
          anonymous_id = coalesce(EXCLUDED.anonymous_id, carts.anonymous_id),
          currency = EXCLUDED.currency, total_minor = EXCLUDED.total_minor, updated_at = EXCLUDED.updated_at
        """, logger: logger)
      try await connection.query(
        "DELETE FROM orders.cart_lines WHERE channel = \(cart.channel) AND cart_id = \(cart.cartID)", logger: logger)
      let lines = cart.lines
      try await connection.query(
        """
        INSERT INTO orders.cart_lines (channel, cart_id, line_no, sku, title, quantity, unit_price_minor, discount_minor, tax_minor)
        SELECT \(cart.channel), \(cart.cartID), l.n, l.sku, l.title, l.quantity, l.price, l.discount, l.tax
        FROM unnest(\(lines.map(\.sku)), \(lines.map(\.title)), \(lines.map(\.quantity)),
                    \(lines.map(\.unitPriceMinor)), \(lines.map(\.discountMinor)), \(lines.map(\.taxMinor)))
             WITH ORDINALITY AS l(sku, title, quantity, price, discount, tax, n)
        """, logger: logger)
    }
    guard let stored = try await self.cart(channel: cart.channel, id: cart.cartID) else {
      throw RPCFailure.internal("cart vanished")
    }
    return stored
  }

  func cart(channel: Int, id: String) async throws -> CartRecord? {
    let rows = try await client.query(
      "SELECT \(unescaped: CartRecord.columns) FROM orders.carts WHERE channel = \(channel) AND cart_id = \(id)",
      logger: logger)
    var carts: [CartRecord] = []
    for try await row in rows { carts.append(try CartRecord(row: row)) }
    return try await withLines(carts, on: nil).first
  }

  private func withLines(_ carts: [CartRecord], on connection: PostgresConnection?) async throws -> [CartRecord] {
    guard !carts.isEmpty else { return [] }
    let query: PostgresQuery = """
      SELECT channel, cart_id, sku, title, quantity, unit_price_minor, discount_minor, tax_minor
      FROM orders.cart_lines l
      WHERE (channel, cart_id) IN (SELECT * FROM unnest(\(carts.map(\.channel)), \(carts.map(\.cartID))))
      ORDER BY channel, cart_id, line_no
      """
    let rows: Rows
    if let connection {
      rows = Rows(try await connection.query(query, logger: logger).collect())
    } else {
      rows = try await client.query(query, logger: logger)
    }
    var lines: [String: [Rapport_Order_V1_OrderLine]] = [:]
    let currencies = Dictionary(carts.map { ("\($0.channel)|\($0.cartID)", $0.currency) }, uniquingKeysWith: { a, _ in a })
    for try await (channel, cart, sku, title, quantity, price, discount, tax) in rows.decode(
      (Int, String, String, String, Int64, Int64, Int64, Int64).self)
    {
      let key = "\(channel)|\(cart)"
      lines[key, default: []].append(
        .line(sku: sku, title: title, quantity: quantity, price: price, discount: discount, tax: tax,
              currency: currencies[key] ?? ""))
    }
    return carts.map { cart in
      var cart = cart
      cart.lines = lines["\(cart.channel)|\(cart.cartID)"] ?? []
      return cart
    }
  }

  /// Marks carts idle since before `now − idle` — with lines, a customer who is not erased and no order —
  /// as abandoned and emits `CartAbandoned` for each, exactly once (the mark and the event commit together;
  /// `SKIP LOCKED` lets several replicas scan side by side). Returns how many it marked.
  func markAbandonedCarts(now: Date, idle: TimeInterval, limit: Int = OrderStore.scanBatch) async throws -> Int {
    try await client.transaction(logger: logger) { connection in
      let rows = try await connection.query(
        """
        SELECT \(unescaped: CartRecord.columns) FROM orders.carts c
        WHERE order_id IS NULL AND abandoned_at IS NULL AND customer_id IS NOT NULL
          AND updated_at <= \(now.addingTimeInterval(-idle))
          AND EXISTS (SELECT 1 FROM orders.cart_lines l WHERE l.channel = c.channel AND l.cart_id = c.cart_id)
          AND NOT EXISTS (SELECT 1 FROM orders.customer_refs r WHERE r.customer_id = c.customer_id AND r.state = \(code: CustomerRef.State.erased))
        ORDER BY updated_at LIMIT \(limit) FOR UPDATE SKIP LOCKED
        """, logger: logger)
      var carts: [CartRecord] = []
      for try await row in rows { carts.append(try CartRecord(row: row)) }
      guard !carts.isEmpty else { return 0 }
      carts = try await withLines(carts, on: connection)
      try await connection.query(
        """
        UPDATE orders.carts SET abandoned_at = \(now)
        WHERE (channel, cart_id) IN (SELECT * FROM unnest(\(carts.map(\.channel)), \(carts.map(\.cartID))))
        """, logger: logger)
      let events = carts.map { cart in
        Outbox.event(
          aggregateType: "cart", aggregateID: "\(cart.channel):\(cart.cartID)", occurredAt: now,
          .cartAbandoned(.with {
            $0.cartID = cart.cartID
            $0.channel = .init(rawValue: cart.channel) ?? .unspecified
            $0.customerID = cart.customerID?.uuidString.lowercased() ?? ""
            $0.lines = cart.lines
            $0.total = cart.money
            $0.lastActivityAt = .init(microsecondsOf: cart.updatedAt)
          }))
      }
      try await outbox.append(contentsOf: events, on: connection, logger: logger)
      return carts.count
    }
  }

  /// Marks B2B orders whose due date passed with money outstanding (not cancelled or refunded) and emits
  /// `OrderPaymentOverdue` for each, exactly once. Returns how many it marked.
  func markOverdueOrders(now: Date, limit: Int = OrderStore.scanBatch) async throws -> Int {
    try await client.transaction(logger: logger) { connection in
      let rows = try await connection.query(
        """
        SELECT \(unescaped: OrderRecord.columns) FROM orders.orders
        WHERE payment_due_at <= \(now) AND overdue_at IS NULL AND paid_minor < total_minor
          AND status NOT IN (\(Rapport_Order_V1_OrderStatus.cancelled.rawValue), \(Rapport_Order_V1_OrderStatus.refunded.rawValue))
        ORDER BY payment_due_at LIMIT \(limit) FOR UPDATE SKIP LOCKED
        """, logger: logger)
      let orders = try await decode(rows)
      guard !orders.isEmpty else { return 0 }
      try await connection.query(
        "UPDATE orders.orders SET overdue_at = \(now) WHERE id = ANY(\(orders.map(\.id)))", logger: logger)
      let events = orders.map { order in
        Outbox.event(
          aggregateType: "order", aggregateID: order.aggregateID, occurredAt: now,
          .orderPaymentOverdue(.with {
            $0.orderID = order.aggregateID
            $0.customerID = order.customer
            $0.companyID = order.terms?.companyID.uuidString.lowercased() ?? ""
            $0.purchaseOrderNumber = order.terms?.purchaseOrderNumber ?? ""
            $0.outstanding = order.money(order.outstandingMinor)
            if let due = order.terms?.dueAt { $0.dueTime = .init(microsecondsOf: due) }
          }))
      }
      try await outbox.append(contentsOf: events, on: connection, logger: logger)
      return orders.count
    }
  }
}
