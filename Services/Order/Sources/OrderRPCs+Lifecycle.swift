import Foundation
import GRPCCore
import RapportCore
import RapportProtos

extension OrderRPCs {
  func fulfillOrder(
    request: Rapport_Order_V1_FulfillOrderRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_FulfillOrderResponse {
    let id = try Validate.uuid(request.orderID, field: "order_id")
    let carrier = try Validate.required(request.carrier, field: "carrier", max: 64)
    let tracking = try Validate.required(request.trackingNumber, field: "tracking_number", max: 128)
    let now = clock.now
    let (order, _) = try await store.change(id, now: now, actor: try OrderInput.actor(request.actor)) { order, _ in
      try OrderLifecycle.fulfill(&order, carrier: carrier, tracking: tracking, now: now)
    }
    return .with { $0.order = order.proto }
  }

  func deliverOrder(
    request: Rapport_Order_V1_DeliverOrderRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_DeliverOrderResponse {
    let id = try Validate.uuid(request.orderID, field: "order_id")
    let now = clock.now
    let (order, _) = try await store.change(id, now: now, actor: try OrderInput.actor(request.actor)) { order, _ in
      try OrderLifecycle.deliver(&order, now: now)
    }
    return .with { $0.order = order.proto }
  }

  func cancelOrder(
    request: Rapport_Order_V1_CancelOrderRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_CancelOrderResponse {
    let id = try Validate.uuid(request.orderID, field: "order_id")
    let reason = try Validate.required(request.reason, field: "reason", max: 500)
    let now = clock.now
    let (order, _) = try await store.change(id, now: now, actor: try OrderInput.actor(request.actor)) { order, _ in
      try OrderLifecycle.cancel(&order, reason: reason, now: now)
    }
    return .with { $0.order = order.proto }
  }

  func recordPayment(
    request: Rapport_Order_V1_RecordPaymentRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_RecordPaymentResponse {
    let id = try Validate.uuid(request.orderID, field: "order_id")
    var payment = Rapport_Order_V1_Payment()
    payment.id = UUID().uuidString.lowercased()
    payment.method = try Validate.specified(request.method, field: "method")
    payment.provider = try Validate.required(request.provider, field: "provider", max: 64)
    payment.providerReference = try Validate.required(request.providerReference, field: "provider_reference", max: 128)
    guard request.hasAmount else { throw RPCFailure.invalid("amount", "is required") }
    let now = clock.now
    let paidAt = try Validate.time(request.paymentTime, isSet: request.hasPaymentTime, field: "payment_time") ?? now
    let (order, outcome) = try await store.change(id, now: now, actor: "payment:\(payment.provider)") {
      order, connection in
      let amount = try OrderInput.money(request.amount, currency: order.currency, field: "amount")
      let stored = try await store.insertPayment(payment, orderID: order.id, amount: amount, paidAt: paidAt, on: connection)
      guard stored.inserted else {
        guard stored.orderID == order.id, stored.amount == amount else {
          throw RPCFailure.failedPrecondition(
            "provider_reference: already recorded by \(payment.provider) for a different payment")
        }
        return Decision(extra: (stored.id, true))
      }
      let decision = try OrderLifecycle.pay(&order, payment, amount: amount, paidAt: paidAt)
      return Decision(events: decision.events, reason: decision.reason, extra: (stored.id, false))
    }
    let recorded = outcome.0.uuidString.lowercased()
    return .with {
      $0.order = order.proto
      $0.payment = order.payments.first { $0.id == recorded } ?? payment
      $0.replayed = outcome.1
    }
  }

  func refundOrder(
    request: Rapport_Order_V1_RefundOrderRequest, context: ServerContext
  ) async throws -> Rapport_Order_V1_RefundOrderResponse {
    let id = try Validate.uuid(request.orderID, field: "order_id")
    var refund = Rapport_Order_V1_Refund()
    refund.id = UUID().uuidString.lowercased()
    refund.refundReference = try Validate.required(request.refundReference, field: "refund_reference", max: 128)
    refund.reason = try Validate.required(request.reason, field: "reason", max: 500)
    refund.actor = try OrderInput.actor(request.actor)
    guard request.hasAmount else { throw RPCFailure.invalid("amount", "is required") }
    let now = clock.now
    let (order, outcome) = try await store.change(id, now: now, actor: refund.actor) { order, connection in
      let amount = try OrderInput.money(request.amount, currency: order.currency, field: "amount")
      let stored = try await store.insertRefund(refund, orderID: order.id, amount: amount, at: now, on: connection)
      guard stored.inserted else {
        guard stored.amount == amount else {
          throw RPCFailure.failedPrecondition("refund_reference: already used on this order for a different amount")
        }
        return Decision(extra: (stored.id, true))
      }
      let decision = try OrderLifecycle.refund(&order, refund, amount: amount, now: now)
      return Decision(events: decision.events, reason: decision.reason, extra: (stored.id, false))
    }
    let recorded = outcome.0.uuidString.lowercased()
    return .with {
      $0.order = order.proto
      $0.refund = order.refunds.first { $0.id == recorded } ?? refund
      $0.replayed = outcome.1
    }
  }
}
