import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// What a lifecycle step decided about a locked order: the events to publish, the history reason when
/// the status moved, and a value for the caller (the payment or refund it recorded).
extension OrderStore {
  /// Locks the order (`FOR UPDATE`, so concurrent steps on one order run one after another and each
  /// sees the state the previous one left), lets `decide` change it, and writes what changed — status
  /// and money columns, a history entry when the status moved, the events — in the same transaction.
  /// NOT_FOUND when there is no such order. Returns the order as committed, with its activity.
  func change<Extra: Sendable>(
    _ id: UUID, now: Date, actor: String,
    _ decide: (inout OrderRecord, PostgresConnection) async throws -> Decision<Extra>
  ) async throws -> (OrderRecord, Extra) {
    let extra: Extra = try await client.transaction(logger: logger) { connection in
      let rows = try await connection.query(
        "SELECT \(unescaped: OrderRecord.columns) FROM orders.orders WHERE id = \(id) FOR UPDATE", logger: logger)
      var found: OrderRecord?
      for try await row in rows { found = try OrderRecord(row: row) }
      guard let before = found else { throw RPCFailure.notFound("order", id.uuidString.lowercased()) }
      var order = before
      let decision = try await decide(&order, connection)
      guard !decision.events.isEmpty else { return decision.extra }
      try await connection.query(
        """
        UPDATE orders.orders SET status = \(order.status.rawValue), paid_minor = \(order.paidMinor),
          refunded_minor = \(order.refundedMinor), carrier = \(order.carrier),
          tracking_number = \(order.trackingNumber), shipped_at = \(order.shippedAt),
          delivered_at = \(order.deliveredAt), updated_at = \(now)
        WHERE id = \(id)
        """, logger: logger)
      if order.status != before.status {
        try await connection.query(
          """
          INSERT INTO orders.status_history (order_id, from_status, to_status, changed_at, actor, reason)
          VALUES (\(id), \(before.status.rawValue), \(order.status.rawValue), \(now), \(actor), \(decision.reason))
          """, logger: logger)
      }
      let events = decision.events.map {
        Outbox.event(aggregateType: "order", aggregateID: order.aggregateID, occurredAt: now, $0)
      }
      try await outbox.append(contentsOf: events, on: connection, logger: logger)
      return decision.extra
    }
    guard let committed = try await get(id: id, full: true) else { throw RPCFailure.notFound("order", "\(id)") }
    return (committed, extra)
  }

  /// Inserts a payment unless (provider, reference) is taken; returns the payment stored under that
  /// reference (this one, or the earlier one) and whether it is this one.
  func insertPayment(
    _ payment: Rapport_Order_V1_Payment, orderID: UUID, amount: Int64, paidAt: Date, on connection: PostgresConnection
  ) async throws -> (orderID: UUID, amount: Int64, id: UUID, inserted: Bool) {
    let id = UUID(uuidString: payment.id) ?? UUID()
    let inserted = try await connection.query(
      """
      INSERT INTO orders.payments (id, order_id, amount_minor, method, provider, provider_reference, paid_at)
      VALUES (\(id), \(orderID), \(amount), \(payment.method.rawValue), \(payment.provider),
              \(payment.providerReference), \(paidAt))
      ON CONFLICT (provider, provider_reference) DO NOTHING RETURNING id
      """, logger: logger)
    for try await _ in inserted.decode(UUID.self) { return (orderID, amount, id, true) }
    let rows = try await connection.query(
      """
      SELECT order_id, amount_minor, id FROM orders.payments
      WHERE provider = \(payment.provider) AND provider_reference = \(payment.providerReference)
      """, logger: logger)
    for try await (order, stored, storedID) in rows.decode((UUID, Int64, UUID).self) {
      return (order, stored, storedID, false)
    }
    throw RPCFailure.unavailable("the payment could not be stored; retry")
  }

  /// Inserts a refund unless the order already has one with this reference; returns the stored one.
  func insertRefund(
    _ refund: Rapport_Order_V1_Refund, orderID: UUID, amount: Int64, at time: Date, on connection: PostgresConnection
  ) async throws -> (amount: Int64, id: UUID, inserted: Bool) {
    let id = UUID(uuidString: refund.id) ?? UUID()
    let inserted = try await connection.query(
      """
      INSERT INTO orders.refunds (id, order_id, refund_reference, amount_minor, reason, actor, refunded_at)
      VALUES (\(id), \(orderID), \(refund.refundReference), \(amount), \(refund.reason), \(refund.actor), \(time))
      ON CONFLICT (order_id, refund_reference) DO NOTHING RETURNING id
      """, logger: logger)
    for try await _ in inserted.decode(UUID.self) { return (amount, id, true) }
    let rows = try await connection.query(
      """
      SELECT amount_minor, id FROM orders.refunds
      WHERE order_id = \(orderID) AND refund_reference = \(refund.refundReference)
      """, logger: logger)
    for try await (stored, storedID) in rows.decode((Int64, UUID).self) { return (stored, storedID, false) }
    throw RPCFailure.unavailable("the refund could not be stored; retry")
  }

  /// Loads the order's status history, payments and refunds, in the order they were recorded.
  func loadActivity(_ order: inout OrderRecord) async throws {
    let history = try await client.query(
      """
      SELECT from_status, to_status, changed_at, actor, reason FROM orders.status_history
      WHERE order_id = \(order.id) ORDER BY id
      """, logger: logger)
    order.history = []
    for try await (from, to, at, actor, reason) in history.decode((Int, Int, Date, String, String).self) {
      order.history.append(.with {
        $0.from = .init(rawValue: from) ?? .unspecified
        $0.to = .init(rawValue: to) ?? .unspecified
        $0.changeTime = .init(microsecondsOf: at)
        $0.actor = actor
        $0.reason = reason
      })
    }
    let currency = order.currency
    let payments = try await client.query(
      """
      SELECT id, amount_minor, method, provider, provider_reference, paid_at FROM orders.payments
      WHERE order_id = \(order.id) ORDER BY recorded
      """, logger: logger)
    order.payments = []
    for try await (id, amount, method, provider, reference, at) in payments.decode(
      (UUID, Int64, Int, String, String, Date).self)
    {
      order.payments.append(.with {
        $0.id = id.uuidString.lowercased()
        $0.amount = .with {
          $0.amountMinor = amount
          $0.currency = currency
        }
        $0.method = .init(rawValue: method) ?? .unspecified
        $0.provider = provider
        $0.providerReference = reference
        $0.paymentTime = .init(microsecondsOf: at)
      })
    }
    let refunds = try await client.query(
      """
      SELECT id, refund_reference, amount_minor, reason, actor, refunded_at FROM orders.refunds
      WHERE order_id = \(order.id) ORDER BY recorded
      """, logger: logger)
    order.refunds = []
    for try await (id, reference, amount, reason, actor, at) in refunds.decode(
      (UUID, String, Int64, String, String, Date).self)
    {
      order.refunds.append(.with {
        $0.id = id.uuidString.lowercased()
        $0.refundReference = reference
        $0.amount = .with {
          $0.amountMinor = amount
          $0.currency = currency
        }
        $0.reason = reason
        $0.actor = actor
        $0.refundTime = .init(microsecondsOf: at)
      })
    }
  }
}
