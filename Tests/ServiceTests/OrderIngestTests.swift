import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import Testing

func address(_ name: String, country: String = "DE") -> Rapport_Order_V1_PostalAddress {
  .with {
    $0.name = name
    $0.line1 = "Hauptstraße 1"
    $0.city = "Berlin"
    $0.postalCode = "10115"
    $0.country = country
  }
}

@Suite(.hangLimit) struct OrderIngestTests {
  @Test func totalsIncludeDiscountsTaxAndShippingAndMustMatchTheShopsTotal() async throws {
    try await withOrders { env in
      var request = order("totals", customer: env.customerID, lines: 2)  // 1×1250 + 2×1250
      request.lines[1].discountMinor = 500
      request.lines[1].taxMinor = 380
      request.shippingMinor = 495
      request.channelOrderReference = "#1042"
      request.shippingAddress = address("Grace Hopper")
      request.billingAddress = address("Grace Hopper")
      request.expectedTotal = .with {
        $0.amountMinor = 3750 - 500 + 380 + 495
        $0.currency = "EUR"
      }
      let placed = try await env.orders.placeOrder(request).order
      #expect(placed.subtotal.amountMinor == 3750)
      #expect(placed.discountTotal.amountMinor == 500)
      #expect(placed.taxTotal.amountMinor == 380)
      #expect(placed.shipping.amountMinor == 495)
      #expect(placed.total.amountMinor == 4125)
      #expect(placed.lines.map(\.totalMinor) == [1250, 2380])
      #expect(placed.shippingAddress.name == "Grace Hopper")
      #expect(try await env.get(placed.id) == placed)
      let event = try await env.events("OrderPlaced")[0].orderPlaced
      #expect(event.total.amountMinor == 4125 && event.lines.count == 2 && event.channelOrderReference == "#1042")

      var wrong = order("totals-2", customer: env.customerID)
      wrong.expectedTotal = .with {
        $0.amountMinor = 9999
        $0.currency = "EUR"
      }
      await expectStatus(.invalidArgument, field: "expected_total") { try await env.orders.placeOrder(wrong) }
      #expect(try await count("orders.orders", env.database) == 1)
    }
  }

  @Test(arguments: [
    BadOrder("lines[0].currency") { r in r.lines[0].currency = "USD" },
    BadOrder("lines[1].discount_minor") { r in r.lines[1].discountMinor = 2501 },
    BadOrder("lines[0].tax_minor") { r in r.lines[0].taxMinor = -1 },
    BadOrder("shipping_minor") { r in r.shippingMinor = -495 },
    BadOrder("expected_total.currency") { r in r.expectedTotal = .with { $0.currency = "USD" } },
    BadOrder("shipping_address.country") { r in r.shippingAddress = address("A", country: "Germany") },
    BadOrder("billing_address.line1") { r in r.billingAddress = .with { $0.country = "DE" } },
    BadOrder("b2b.company_id") { r in r.b2B = .with { $0.companyID = "acme" } },
    BadOrder("b2b.payment_terms_net_days") { r in
      r.b2B = .with {
        $0.companyID = UUID().uuidString
        $0.paymentTermsNetDays = 400
      }
    },
    BadOrder("customer_identities") { r in r.customerIdentities = [.with { $0.kind = .email; $0.value = "x@example.com" }] },
    BadOrder("customer_id") { r in r.customerID = "" },
    BadOrder("customer_identities[0].kind") { r in
      r.customerID = ""
      r.customerIdentities = [.with { $0.value = "x@example.com" }]
    },
    BadOrder("cart_id") { r in r.cartID = String(repeating: "c", count: 129) },
  ])
  func moreInvalidOrdersNameTheFieldAndStoreNothing(_ bad: BadOrder) async throws {
    try await withOrders { env in
      var request = order("bad", customer: env.customerID)
      bad.mutate(&request)
      await expectStatus(.invalidArgument, field: bad.field) { try await env.orders.placeOrder(request) }
      let stored = try await count("orders.orders", env.database)
      let events = try await count("orders.outbox", env.database)
      #expect(stored == 0 && events == 0)
    }
  }

  @Test func anOrderGivenByIdentityResolvesOrCreatesTheCustomer() async throws {
    try await withOrders { env in
      func byEmail(_ key: String, _ email: String) -> Rapport_Order_V1_PlaceOrderRequest {
        var request = order(key, customer: "")
        request.customerIdentities = [.with {
          $0.kind = .email
          $0.value = email
        }]
        request.billingAddress = address("Katherine Johnson")
        return request
      }
      let known = try await env.orders.placeOrder(byEmail("id-1", "BUYER@example.com")).order
      #expect(known.customerID == env.customerID)
      let fresh = try await env.orders.placeOrder(byEmail("id-2", "new.buyer@example.com")).order
      let created = try await env.customers.findCustomer(.with { $0.email = "new.buyer@example.com" }).customer
      #expect(fresh.customerID == created.id)
      #expect(created.givenName == "Katherine")
      let again = try await env.orders.placeOrder(byEmail("id-2", "new.buyer@example.com"))
      #expect(again.replayed && again.order.id == fresh.id)
    }
  }

  @Test func b2bOrdersCarryTheirTermsAndADueDate() async throws {
    try await withOrders { env in
      let company = try await env.customers.createCompany(.with {
        $0.company = .with {
          $0.legalName = "Acme GmbH"
          $0.paymentTermsNetDays = 30
        }
      }).company
      // Only the company's contacts order on its terms.
      var request = order("b2b-1", customer: env.customerID)
      request.channel = .b2B
      request.b2B = .with { $0.companyID = company.id }
      await expectStatus(.failedPrecondition, mentioning: "contact") { try await env.orders.placeOrder(request) }
      _ = try await env.customers.linkContact(.with {
        $0.companyID = company.id
        $0.customerID = env.customerID
        $0.role = "buyer"
      })
      request = order("b2b-1", customer: env.customerID)
      request.channel = .b2B
      request.b2B = .with {
        $0.companyID = company.id
        $0.purchaseOrderNumber = "PO-77"
      }
      let placed = try await env.orders.placeOrder(request).order
      #expect(placed.b2B.paymentTermsNetDays == 30 && placed.b2B.purchaseOrderNumber == "PO-77")
      #expect(placed.paymentDueTime.seconds - placed.createTime.seconds == 30 * 86_400)
      var explicit = order("b2b-2", customer: env.customerID)
      explicit.b2B = .with {
        $0.companyID = company.id
        $0.paymentTermsNetDays = 10
      }
      let ten = try await env.orders.placeOrder(explicit).order
      #expect(ten.paymentDueTime.seconds - ten.createTime.seconds == 10 * 86_400)
      // Orders on terms may ship before they are paid.
      let shipped = try await env.orders.fulfillOrder(.with {
        $0.orderID = ten.id
        $0.carrier = "DPD"
        $0.trackingNumber = "D1"
      }).order
      #expect(shipped.status == .fulfilled)
      var unknown = order("b2b-3", customer: env.customerID)
      unknown.b2B = .with { $0.companyID = UUID().uuidString }
      await expectStatus(.notFound) { try await env.orders.placeOrder(unknown) }
      #expect(try await count("orders.orders", env.database) == 2)
      #expect(try await env.events("OrderPlaced")[0].orderPlaced.purchaseOrderNumber == "PO-77")
    }
  }

  @Test func anOrderWithNothingToPayIsPaidAtOnce() async throws {
    try await withOrders { env in
      var request = order("free", customer: env.customerID, lines: 1)
      request.lines[0].discountMinor = 1250
      let placed = try await env.orders.placeOrder(request).order
      #expect(placed.status == .paid && placed.total.amountMinor == 0)
      #expect(try await eventTypes("orders", env.database) == ["OrderPlaced", "OrderPaid"])
    }
  }

  @Test func erasedCustomersCannotOrderAndTheirAddressSnapshotsAreDropped() async throws {
    try await withOrders { env in
      var request = order("erase-1", customer: env.customerID)
      request.shippingAddress = address("Ada")
      let placed = try await env.orders.placeOrder(request).order
      _ = try await env.customers.eraseCustomer(.with {
        $0.customerID = env.customerID
        $0.reason = "ticket 1"
      })
      try await eventually("the order's address snapshot is dropped") {
        try await !env.get(placed.id).hasShippingAddress
      }
      await expectStatus(.failedPrecondition, mentioning: "erased") { try await env.place("erase-2") }
      #expect(try await count("orders.orders", env.database) == 1)
      #expect(try await env.get(placed.id).total.amountMinor == 3750)
    }
  }

  @Test func ordersForAMergedCustomerLandOnTheSurvivor() async throws {
    try await withOrders { env in
      let duplicate = try await env.customers.createCustomer(.with { $0.email = "dup@example.com" }).customer
      let early = try await env.orders.placeOrder(order("m-1", customer: duplicate.id)).order
      _ = try await env.customers.mergeCustomers(.with {
        $0.survivorID = env.customerID
        $0.duplicateID = duplicate.id
      })
      try await eventually("the duplicate's order moves to the survivor") {
        try await env.get(early.id).customerID == env.customerID
      }
      let late = try await env.orders.placeOrder(order("m-2", customer: duplicate.id)).order
      #expect(late.customerID == env.customerID)
      let summary = try await env.orders.getCustomerOrderSummary(.with { $0.customerID = env.customerID }).summary
      #expect(summary.orderCount == 2)
    }
  }
}
