import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import Testing

/// A payment request for `order` of `amount` minor units in EUR.
func payment(_ order: String, _ amount: Int64, reference: String, currency: String = "EUR")
  -> Rapport_Order_V1_RecordPaymentRequest
{
  .with {
    $0.orderID = order
    $0.amount = .with {
      $0.amountMinor = amount
      $0.currency = currency
    }
    $0.method = .card
    $0.provider = "stripe"
    $0.providerReference = reference
  }
}

func refund(_ order: String, _ amount: Int64, reference: String) -> Rapport_Order_V1_RefundOrderRequest {
  .with {
    $0.orderID = order
    $0.amount = .with {
      $0.amountMinor = amount
      $0.currency = "EUR"
    }
    $0.refundReference = reference
    $0.reason = "damaged"
    $0.actor = "agent:kim"
  }
}

@Suite(.hangLimit) struct OrderLifecycleTests {
  @Test func anOrderGoesFromPendingThroughPaidAndShippedToDeliveredWithEveryStepInItsHistory() async throws {
    try await withOrders { env in
      let placed = try await env.place("life-1")  // total 3750
      #expect(placed.status == .pending)
      let partial = try await env.orders.recordPayment(payment(placed.id, 1000, reference: "pi_1"))
      #expect(partial.order.status == .pending)
      #expect(partial.order.amountPaid.amountMinor == 1000)
      #expect(partial.payment.amount.amountMinor == 1000 && !partial.replayed)
      let rest = try await env.orders.recordPayment(payment(placed.id, 2750, reference: "pi_2"))
      #expect(rest.order.status == .paid)
      let shipped = try await env.orders.fulfillOrder(.with {
        $0.orderID = placed.id
        $0.carrier = "DHL"
        $0.trackingNumber = "JD0001"
        $0.actor = "warehouse"
      }).order
      #expect(shipped.status == .fulfilled)
      #expect(shipped.shipment.carrier == "DHL" && shipped.shipment.trackingNumber == "JD0001")
      let delivered = try await env.orders.deliverOrder(.with { $0.orderID = placed.id }).order
      #expect(delivered.status == .delivered && delivered.hasDeliverTime)

      let read = try await env.get(placed.id)
      #expect(read.history.map { [$0.from, $0.to] } == [
        [.unspecified, .pending], [.pending, .paid], [.paid, .fulfilled], [.fulfilled, .delivered],
      ])
      #expect(read.history.map(\.actor) == ["shop", "payment:stripe", "warehouse", "api"])
      #expect(read.payments.map(\.providerReference) == ["pi_1", "pi_2"])
      #expect(
        try await eventTypes("orders", env.database) == [
          "OrderPlaced", "PaymentRecorded", "PaymentRecorded", "OrderPaid", "OrderFulfilled", "OrderDelivered",
        ])
      let paid = try await env.events("PaymentRecorded")
      #expect(paid.map(\.paymentRecorded.outstanding.amountMinor) == [2750, 0])
      #expect(try await env.events("OrderFulfilled").first?.orderFulfilled.trackingNumber == "JD0001")
    }
  }

  @Test func illegalTransitionsNameTheCurrentStateAndChangeNothing() async throws {
    try await withOrders { env in
      let order = try await env.place("illegal-1")
      let ship = Rapport_Order_V1_FulfillOrderRequest.with {
        $0.orderID = order.id
        $0.carrier = "UPS"
        $0.trackingNumber = "1Z"
      }
      await expectStatus(.failedPrecondition, mentioning: "PENDING") { try await env.orders.fulfillOrder(ship) }
      await expectStatus(.failedPrecondition, mentioning: "PENDING") {
        try await env.orders.deliverOrder(.with { $0.orderID = order.id })
      }
      _ = try await env.orders.recordPayment(payment(order.id, 3750, reference: "full"))
      await expectStatus(.failedPrecondition, mentioning: "PAID") {
        try await env.orders.deliverOrder(.with { $0.orderID = order.id })
      }
      _ = try await env.orders.fulfillOrder(ship)
      await expectStatus(.failedPrecondition, mentioning: "FULFILLED") {
        try await env.orders.cancelOrder(.with {
          $0.orderID = order.id
          $0.reason = "changed my mind"
        })
      }
      let before = try await env.get(order.id)
      let events = try await count("orders.outbox", env.database)
      // Repeating a step already taken is no error and changes nothing.
      let again = try await env.orders.fulfillOrder(ship).order
      #expect(again == before)
      #expect(try await count("orders.outbox", env.database) == events)
      await expectStatus(.notFound) { try await env.orders.cancelOrder(.with {
        $0.orderID = UUID().uuidString
        $0.reason = "x"
      }) }
      await expectStatus(.invalidArgument, field: "reason") { try await env.orders.cancelOrder(.with { $0.orderID = order.id }) }
      await expectStatus(.invalidArgument, field: "tracking_number") {
        try await env.orders.fulfillOrder(.with {
          $0.orderID = order.id
          $0.carrier = "UPS"
        })
      }
    }
  }

  @Test func paymentsAccumulateAreIdempotentByProviderReferenceAndNeverExceedTheTotal() async throws {
    try await withOrders { env in
      let order = try await env.place("pay-1")
      let other = try await env.place("pay-2")
      let first = try await env.orders.recordPayment(payment(order.id, 500, reference: "ch_1"))
      let retry = try await env.orders.recordPayment(payment(order.id, 500, reference: "ch_1"))
      #expect(retry.replayed && retry.payment.id == first.payment.id && retry.order.amountPaid.amountMinor == 500)
      await expectStatus(.failedPrecondition, mentioning: "provider_reference") {
        try await env.orders.recordPayment(payment(order.id, 600, reference: "ch_1"))
      }
      await expectStatus(.failedPrecondition, mentioning: "provider_reference") {
        try await env.orders.recordPayment(payment(other.id, 500, reference: "ch_1"))
      }
      await expectStatus(.failedPrecondition, mentioning: "outstanding 3250") {
        try await env.orders.recordPayment(payment(order.id, 3251, reference: "ch_2"))
      }
      await expectStatus(.invalidArgument, field: "amount.currency") {
        try await env.orders.recordPayment(payment(order.id, 100, reference: "ch_3", currency: "USD"))
      }
      await expectStatus(.invalidArgument, field: "amount.amount_minor") {
        try await env.orders.recordPayment(payment(order.id, 0, reference: "ch_4"))
      }
      var noMethod = payment(order.id, 100, reference: "ch_5")
      noMethod.method = .unspecified
      await expectStatus(.invalidArgument, field: "method") { try await env.orders.recordPayment(noMethod) }
      #expect(try await count("orders.payments", env.database) == 1)
      #expect(try await env.events("PaymentRecorded").count == 1)
      #expect(try await env.get(order.id).amountPaid.amountMinor == 500)
    }
  }

  @Test func refundsArePartialOrFullAndNeverMoreThanCaptured() async throws {
    try await withOrders { env in
      let order = try await env.place("refund-1")
      await expectStatus(.failedPrecondition, mentioning: "refundable 0") {
        try await env.orders.refundOrder(refund(order.id, 100, reference: "r0"))
      }
      _ = try await env.orders.recordPayment(payment(order.id, 3750, reference: "cap"))
      let partial = try await env.orders.refundOrder(refund(order.id, 1000, reference: "r1"))
      #expect(partial.order.status == .paid && partial.order.amountRefunded.amountMinor == 1000)
      let replay = try await env.orders.refundOrder(refund(order.id, 1000, reference: "r1"))
      #expect(replay.replayed && replay.refund.id == partial.refund.id)
      await expectStatus(.failedPrecondition, mentioning: "refundable 2750") {
        try await env.orders.refundOrder(refund(order.id, 2751, reference: "r2"))
      }
      let full = try await env.orders.refundOrder(refund(order.id, 2750, reference: "r3"))
      #expect(full.order.status == .refunded && full.order.amountRefunded.amountMinor == 3750)
      #expect(full.order.refunds.map(\.refundReference) == ["r1", "r3"])
      #expect(try await env.events("OrderRefunded").map(\.orderRefunded.full) == [false, true])
      await expectStatus(.failedPrecondition, mentioning: "REFUNDED") {
        try await env.orders.recordPayment(payment(order.id, 1, reference: "late"))
      }
    }
  }

  @Test func cancellingBeforeShipmentKeepsCapturedMoneyRefundable() async throws {
    try await withOrders { env in
      let order = try await env.place("cancel-1")
      _ = try await env.orders.recordPayment(payment(order.id, 1200, reference: "dep"))
      let cancel = Rapport_Order_V1_CancelOrderRequest.with {
        $0.orderID = order.id
        $0.reason = "out of stock"
        $0.actor = "agent:kim"
      }
      let cancelled = try await env.orders.cancelOrder(cancel).order
      #expect(cancelled.status == .cancelled)
      #expect(cancelled.history.last?.reason == "out of stock")
      _ = try await env.orders.cancelOrder(cancel)
      let events = try await env.events("OrderCancelled")
      #expect(events.count == 1)
      #expect(events.first?.orderCancelled.amountPaid.amountMinor == 1200)
      #expect(events.first?.orderCancelled.previousStatus == .pending)
      let refunded = try await env.orders.refundOrder(refund(order.id, 1200, reference: "back")).order
      #expect(refunded.status == .refunded)
    }
  }

  @Test func concurrentTransitionsOnOneOrderAreSerialisedAndOneWins() async throws {
    try await withOrders { env in
      for round in 0..<6 {
        let order = try await env.place("race-\(round)")
        _ = try await env.orders.recordPayment(payment(order.id, 3750, reference: "race-\(round)"))
        async let cancel: RPCError.Code? = code {
          try await env.orders.cancelOrder(.with {
            $0.orderID = order.id
            $0.reason = "race"
          })
        }
        async let ship: RPCError.Code? = code {
          try await env.orders.fulfillOrder(.with {
            $0.orderID = order.id
            $0.carrier = "DHL"
            $0.trackingNumber = "R\(round)"
          })
        }
        let outcomes = await [cancel, ship]
        #expect(outcomes.filter { $0 == nil }.count == 1, "round \(round): \(outcomes)")
        #expect(outcomes.filter { $0 == .failedPrecondition }.count == 1, "round \(round): \(outcomes)")
        let final = try await env.get(order.id)
        #expect(final.status == (outcomes[0] == nil ? .cancelled : .fulfilled))
        #expect(final.history.count == 3)
      }
    }
  }
}

/// nil when `body` succeeds, else the RPC status code it failed with.
func code<T: Sendable>(_ body: () async throws -> T) async -> RPCError.Code? {
  do {
    _ = try await body()
    return nil
  } catch let error as RPCError {
    return error.code
  } catch {
    return .unknown
  }
}

