import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import Testing

func cart(_ id: String, customer: String = "", anonymous: String = "", lines: Int = 2) -> Rapport_Order_V1_UpsertCartRequest {
  .with {
    $0.cartID = id
    $0.channel = .web
    $0.customerID = customer
    $0.anonymousID = anonymous
    $0.currency = "EUR"
    $0.lines = lines == 0 ? [] : order("unused", customer: "", lines: lines).lines
  }
}

@Suite(.hangLimit) struct OrderCartTests {
  @Test func anIdleCartIsAbandonedOnceAndRecoveredWhenItBecomesAnOrder() async throws {
    try await withOrders { env in
      let stored = try await env.orders.upsertCart(cart("c-1", customer: env.customerID)).cart
      #expect(stored.state == .active && stored.total.amountMinor == 3750 && stored.lines.count == 2)
      env.clock.advance(by: 59 * 60)
      try await Task.sleep(for: .milliseconds(300))  // several scans at 50 ms
      #expect(try await env.events("CartAbandoned").isEmpty)
      env.clock.advance(by: 2 * 60)
      try await eventually("the idle cart is abandoned") { try await env.events("CartAbandoned").count == 1 }
      try await Task.sleep(for: .milliseconds(300))
      let abandoned = try await env.events("CartAbandoned")
      #expect(abandoned.count == 1)
      #expect(abandoned[0].cartAbandoned.customerID == env.customerID)
      #expect(abandoned[0].cartAbandoned.total.amountMinor == 3750 && abandoned[0].cartAbandoned.lines.count == 2)
      let read = try await env.orders.getCart(.with {
        $0.channel = .web
        $0.cartID = "c-1"
      }).cart
      #expect(read.state == .abandoned && read.hasAbandonTime)

      var request = order("from-cart", customer: env.customerID)
      request.cartID = "c-1"
      let placed = try await env.orders.placeOrder(request).order
      #expect(placed.cartID == "c-1")
      let recovered = try await env.events("CartRecovered")
      #expect(recovered.map(\.cartRecovered.orderID) == [placed.id])
      let converted = try await env.orders.getCart(.with {
        $0.channel = .web
        $0.cartID = "c-1"
      }).cart
      #expect(converted.state == .converted && converted.orderID == placed.id)
      await expectStatus(.failedPrecondition, mentioning: placed.id) {
        try await env.orders.upsertCart(cart("c-1", customer: env.customerID))
      }
      var second = order("from-cart-2", customer: env.customerID)
      second.cartID = "c-1"
      await expectStatus(.failedPrecondition, mentioning: "cart_id") { try await env.orders.placeOrder(second) }
      // A replay of the converting order still answers with the order.
      #expect(try await env.orders.placeOrder(request).replayed)
    }
  }

  @Test func anonymousFreshEmptyAndConvertedCartsAreNotAbandoned() async throws {
    try await withOrders { env in
      _ = try await env.orders.upsertCart(cart("anon", anonymous: "cookie-1"))
      _ = try await env.orders.upsertCart(cart("converted", customer: env.customerID))
      var request = order("conv", customer: env.customerID)
      request.cartID = "converted"
      _ = try await env.orders.placeOrder(request)
      _ = try await env.orders.upsertCart(cart("empty", customer: env.customerID, lines: 0))
      env.clock.advance(by: 30 * 60)
      _ = try await env.orders.upsertCart(cart("fresh", customer: env.customerID))
      env.clock.advance(by: 45 * 60)
      try await Task.sleep(for: .milliseconds(400))
      #expect(try await env.events("CartAbandoned").isEmpty)
      #expect(try await env.events("CartRecovered").isEmpty)  // converted before it was ever abandoned
      // The anonymous visitor logs in: the cart gets a customer and can now be abandoned.
      let attached = try await env.orders.upsertCart(cart("anon", customer: env.customerID)).cart
      #expect(attached.customerID == env.customerID && attached.anonymousID == "cookie-1")
      env.clock.advance(by: 61 * 60)
      try await eventually("fresh and the logged-in cart are abandoned") {
        try await Set(env.events("CartAbandoned").map(\.cartAbandoned.cartID)) == ["fresh", "anon"]
      }
    }
  }

  @Test func badCartsAndUnknownCartsGetPreciseStatuses() async throws {
    try await withOrders { env in
      await expectStatus(.invalidArgument, field: "cart_id") { try await env.orders.upsertCart(cart("")) }
      await expectStatus(.invalidArgument, field: "currency") {
        try await env.orders.upsertCart(cart("x").changed { $0.currency = "XXXX" })
      }
      await expectStatus(.invalidArgument, field: "lines[0].quantity") {
        try await env.orders.upsertCart(cart("x").changed { $0.lines[0].quantity = 0 })
      }
      await expectStatus(.notFound) { try await env.orders.upsertCart(cart("x", customer: UUID().uuidString)) }
      await expectStatus(.notFound) { try await env.orders.getCart(.with {
        $0.channel = .web
        $0.cartID = "nope"
      }) }
      var request = order("no-cart", customer: env.customerID)
      request.cartID = "nope"
      await expectStatus(.notFound) { try await env.orders.placeOrder(request) }
      let carts = try await count("orders.carts", env.database)
      let orders = try await count("orders.orders", env.database)
      #expect(carts == 0 && orders == 0)
    }
  }

  @Test func anUnpaidB2BOrderIsReportedOverdueOnceWhenItsDueDatePasses() async throws {
    try await withOrders { env in
      let company = try await env.customers.createCompany(.with { $0.company.legalName = "Initech" }).company
      _ = try await env.customers.linkContact(.with {
        $0.companyID = company.id
        $0.customerID = env.customerID
      })
      func onTerms(_ key: String) -> Rapport_Order_V1_PlaceOrderRequest {
        order(key, customer: env.customerID).changed {
          $0.b2B = .with {
            $0.companyID = company.id
            $0.purchaseOrderNumber = "PO-\(key)"
            $0.paymentTermsNetDays = 30
          }
        }
      }
      let unpaid = try await env.orders.placeOrder(onTerms("due-1")).order
      let paid = try await env.orders.placeOrder(onTerms("due-2")).order
      _ = try await env.orders.recordPayment(payment(paid.id, 3750, reference: "wire-1"))
      let partly = try await env.orders.placeOrder(onTerms("due-3")).order
      _ = try await env.orders.recordPayment(payment(partly.id, 750, reference: "wire-2"))
      env.clock.advance(by: 29 * 86_400)
      try await Task.sleep(for: .milliseconds(300))
      #expect(try await env.events("OrderPaymentOverdue").isEmpty)
      env.clock.advance(by: 86_400 + 1)
      try await eventually("two overdue orders are reported") { try await env.events("OrderPaymentOverdue").count == 2 }
      try await Task.sleep(for: .milliseconds(300))
      let overdue = try await env.events("OrderPaymentOverdue").map(\.orderPaymentOverdue)
      #expect(overdue.count == 2)
      #expect(Set(overdue.map(\.orderID)) == [unpaid.id, partly.id])
      #expect(overdue.first { $0.orderID == partly.id }?.outstanding.amountMinor == 3000)
      #expect(overdue.first { $0.orderID == unpaid.id }?.purchaseOrderNumber == "PO-due-1")
    }
  }
}
