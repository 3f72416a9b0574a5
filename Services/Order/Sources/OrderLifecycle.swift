import Foundation
import RapportCore
import RapportProtos

/// The order state machine. Each step takes the locked order, changes it, and returns the events to
/// publish; a repeat of a step already taken (same parameters) changes nothing and publishes nothing;
/// anything else illegal is FAILED_PRECONDITION naming the current state.
enum OrderLifecycle {
  static func fulfill(_ order: inout OrderRecord, carrier: String, tracking: String, now: Date) throws -> Decision<Void> {
    if order.status == .fulfilled || order.status == .delivered, order.carrier == carrier,
      order.trackingNumber == tracking
    {
      return Decision(extra: ())
    }
    guard order.status == .paid || (order.status == .pending && order.terms != nil) else {
      throw illegal(order, "only PAID orders, or PENDING orders with B2B payment terms, can be fulfilled")
    }
    order.status = .fulfilled
    order.carrier = carrier
    order.trackingNumber = tracking
    order.shippedAt = now
    return Decision(
      events: [.orderFulfilled(.with {
        $0.orderID = order.aggregateID
        $0.customerID = order.customer
        $0.carrier = carrier
        $0.trackingNumber = tracking
        $0.shippedAt = .init(microsecondsOf: now)
      })], reason: "shipped with \(carrier) \(tracking)", extra: ())
  }

  static func deliver(_ order: inout OrderRecord, now: Date) throws -> Decision<Void> {
    if order.status == .delivered { return Decision(extra: ()) }
    guard order.status == .fulfilled else { throw illegal(order, "only FULFILLED orders can be delivered") }
    order.status = .delivered
    order.deliveredAt = now
    return Decision(
      events: [.orderDelivered(.with {
        $0.orderID = order.aggregateID
        $0.customerID = order.customer
        $0.deliveredAt = .init(microsecondsOf: now)
      })], reason: "delivered", extra: ())
  }

  static func cancel(_ order: inout OrderRecord, reason: String, now: Date) throws -> Decision<Void> {
    if order.status == .cancelled { return Decision(extra: ()) }
    guard order.status == .pending || order.status == .paid else {
      throw illegal(order, "only PENDING or PAID orders (not yet shipped) can be cancelled")
    }
    let previous = order.status
    order.status = .cancelled
    return Decision(
      events: [.orderCancelled(.with {
        $0.orderID = order.aggregateID
        $0.customerID = order.customer
        $0.previousStatus = previous
        $0.reason = reason
        $0.total = order.money(order.totalMinor)
        $0.amountPaid = order.money(order.paidMinor)
        $0.cancelledAt = .init(microsecondsOf: now)
      })], reason: reason, extra: ())
  }

  /// Adds a captured payment. Fully paid: PENDING → PAID (orders shipped on terms keep their status)
  /// and `OrderPaid`.
  static func pay(
    _ order: inout OrderRecord, _ payment: Rapport_Order_V1_Payment, amount: Int64, paidAt: Date
  ) throws -> Decision<Void> {
    guard order.status != .cancelled, order.status != .refunded else {
      throw illegal(order, "payments cannot be recorded on a \(name(order.status)) order")
    }
    guard amount <= order.outstandingMinor else {
      throw RPCFailure.failedPrecondition(
        "amount \(amount) exceeds the outstanding \(order.outstandingMinor) \(order.currency) of the order")
    }
    order.paidMinor += amount
    var events: [Rapport_Events_V1_Event.OneOf_Payload] = [
      .paymentRecorded(.with {
        $0.orderID = order.aggregateID
        $0.customerID = order.customer
        $0.paymentID = payment.id
        $0.amount = order.money(amount)
        $0.method = payment.method
        $0.provider = payment.provider
        $0.providerReference = payment.providerReference
        $0.amountPaid = order.money(order.paidMinor)
        $0.outstanding = order.money(order.outstandingMinor)
        $0.paidAt = .init(microsecondsOf: paidAt)
      })
    ]
    if order.outstandingMinor == 0 {
      if order.status == .pending { order.status = .paid }
      events.append(paid(order, at: paidAt))
    }
    return Decision(events: events, reason: "fully paid", extra: ())
  }

  /// Refunds part of what was captured; everything captured refunded → REFUNDED.
  static func refund(_ order: inout OrderRecord, _ refund: Rapport_Order_V1_Refund, amount: Int64, now: Date) throws
    -> Decision<Void>
  {
    let refundable = order.paidMinor - order.refundedMinor
    guard amount <= refundable else {
      throw RPCFailure.failedPrecondition(
        "refund of \(amount) exceeds the refundable \(refundable) \(order.currency) (captured \(order.paidMinor), already refunded \(order.refundedMinor))")
    }
    order.refundedMinor += amount
    let full = order.refundedMinor == order.paidMinor
    if full { order.status = .refunded }
    return Decision(
      events: [.orderRefunded(.with {
        $0.orderID = order.aggregateID
        $0.customerID = order.customer
        $0.refundID = refund.id
        $0.amount = order.money(amount)
        $0.amountRefunded = order.money(order.refundedMinor)
        $0.full = full
        $0.reason = refund.reason
        $0.refundedAt = .init(microsecondsOf: now)
      })], reason: "refunded: \(refund.reason)", extra: ())
  }

  static func paid(_ order: OrderRecord, at time: Date) -> Rapport_Events_V1_Event.OneOf_Payload {
    .orderPaid(.with {
      $0.orderID = order.aggregateID
      $0.customerID = order.customer
      $0.total = order.money(order.totalMinor)
      $0.paidAt = .init(microsecondsOf: time)
    })
  }

  static func illegal(_ order: OrderRecord, _ rule: String) -> Error {
    RPCFailure.failedPrecondition("order is \(name(order.status)); \(rule)")
  }

  /// PENDING, PAID, … as partners see the states.
  static func name(_ status: Rapport_Order_V1_OrderStatus) -> String {
    switch status {
    case .pending: "PENDING"
    case .paid: "PAID"
    case .fulfilled: "FULFILLED"
    case .delivered: "DELIVERED"
    case .cancelled: "CANCELLED"
    case .refunded: "REFUNDED"
    default: "UNSPECIFIED"
    }
  }
}
