import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import Testing

extension Executables {
  /// The five real executables, started as child processes on free loopback ports against a fresh
  /// database, called over HTTP/2 — from Swift, and from Python as a partner would.
  @Suite struct EndToEndTests {
    @Test func customerOrderTicketFlowThroughTheViewAndSurvivesALostService() async throws {
      try await withStack { try await exercise($0) }
    }

    private func exercise(_ stack: Stack) async throws {
      try await stack.withClients { clients in
        let (customers, orders, support, gateway) = (clients.customers, clients.orders, clients.support, clients.gateway)

        let customer = try await customers.createCustomer(.with {
          $0.email = "e2e@example.com"
          $0.givenName = "Edith"
        }).customer
        let request = Rapport_Order_V1_PlaceOrderRequest.with {
          $0.idempotencyKey = "shop-order-1001"
          $0.customerID = customer.id
          $0.channel = .web
          $0.currency = "EUR"
          $0.lines = [.with { $0.sku = "TEA"; $0.quantity = 3; $0.unitPriceMinor = 499 }]
        }
        let first = try await orders.placeOrder(request)
        let retry = try await orders.placeOrder(request)
        #expect(retry.replayed && retry.order.id == first.order.id)
        let ticket = try await support.openTicket(.with {
          $0.customerID = customer.id
          $0.subject = "Damaged tin"
          $0.body = "The tin arrived dented."
        }).ticket

        // The view shows them, and the analytics metrics catch up from the event feeds.
        try await eventually(within: .seconds(10), "metrics show one order and one ticket") {
          let metrics = try await gateway.getCustomerView(.with { $0.email = "e2e@example.com" }).view.metrics
          return metrics.orderCount == 1 && metrics.openTicketCount == 1
        }
        let view = try await gateway.getCustomerView(.with { $0.email = "e2e@example.com" }).view
        #expect(view.customer.id == customer.id)
        #expect(view.recentOrders.map(\.id) == [first.order.id])
        #expect(view.openTickets.map(\.id) == [ticket.id])
        #expect(view.metrics.revenue.map(\.amountMinor) == [1497])

        // A partner in another language calls the gateway and the customer service.
        let partner = try await Self.interop(stack, email: "e2e@example.com")
        #expect(partner["found_id"] as? String == customer.id)
        #expect(partner["view_customer_id"] as? String == customer.id)
        #expect(partner["created_email"] as? String == "python.partner@example.com")
        #expect((partner["bad_request"] as? [String: Any])?["code"] as? String == "INVALID_ARGUMENT")
        #expect(partner["view_order_totals"] as? [Int] == [1497])
        #expect(partner["too_large"] as? String == "RESOURCE_EXHAUSTED")
        let nul = partner["nul"] as? [String: Any]
        #expect(nul?["code"] as? String == "INVALID_ARGUMENT")
        #expect((nul?["details"] as? String)?.hasPrefix("given_name:") == true)
        #expect((nul?["request_id"] as? String)?.isEmpty == false)

        // With the support service gone, the view still answers in time, tickets UNAVAILABLE.
        await stack.process("support").stop()
        var options = CallOptions.defaults
        // 2 s: the whole suite runs beside this stack on 2 shared cores (1 s was missed once).
        options.timeout = .seconds(2)
        let started = ContinuousClock.now
        let partial = try await gateway.getCustomerView(.with { $0.customerID = customer.id }, options: options).view
        #expect(ContinuousClock.now - started < .seconds(2))
        let codes = Dictionary(uniqueKeysWithValues: partial.sections.map { ($0.name, $0.code) })
        #expect(codes == ["customer": 0, "orders": 0, "tickets": 14, "metrics": 0, "order_summary": 0, "support_summary": 14])
        #expect(partial.recentOrders.count == 1)
      }
    }

    @Test func mergeAndErasePropagateToOrdersTicketsMetricsAndTheView() async throws {
      // RFM cut points every second and models every 2 s (default: hourly), so the view shows a segment
      // and a CLV within the test.
      try await withStack(settings: ["analytics": ["rfm-interval-s": "1", "fit-interval-s": "2"]]) { try await mergeThenErase($0) }
    }

    private func mergeThenErase(_ stack: Stack) async throws {
      try await stack.withClients { clients in
        let (customers, orders, support, gateway) = (clients.customers, clients.orders, clients.support, clients.gateway)
        let survivor = try await customers.createCustomer(.with {
          $0.email = "mary@example.com"
          $0.givenName = "Mary"
        }).customer
        let duplicate = try await customers.createCustomer(.with {
          $0.email = "m.shelley@example.org"
          $0.familyName = "Shelley"
        }).customer
        func order(_ customer: String, _ key: String) async throws -> String {
          try await orders.placeOrder(.with {
            $0.idempotencyKey = key
            $0.customerID = customer
            $0.channel = .web
            $0.currency = "GBP"
            $0.lines = [.with { $0.sku = "BOOK"; $0.quantity = 1; $0.unitPriceMinor = 1200 }]
          }).order.id
        }
        let orderIDs = [try await order(survivor.id, "o-1"), try await order(duplicate.id, "o-2")]
        var opened: [String] = []
        for customer in [survivor.id, duplicate.id] {
          opened.append(try await support.openTicket(.with {
            $0.customerID = customer
            $0.subject = "Where is my book, Mary Shelley asks"
            $0.body = "Please send it to 1 Polidori Lane."
          }).ticket.id)
        }
        let ticketIDs = opened
        try await eventually(within: .seconds(10), "analytics saw both customers' orders") {
          let a = try await gateway.getCustomerView(.with { $0.customerID = survivor.id }).view.metrics.orderCount
          let b = try await gateway.getCustomerView(.with { $0.customerID = duplicate.id }).view.metrics.orderCount
          return a == 1 && b == 1
        }

        _ = try await customers.mergeCustomers(.with {
          $0.survivorID = survivor.id
          $0.duplicateID = duplicate.id
        })
        // Order, support and analytics consume CustomerMerged and re-point their rows.
        try await eventually(within: .seconds(10), "the survivor's view shows every order and ticket") {
          let view = try await gateway.getCustomerView(.with { $0.customerID = survivor.id }).view
          return Set(view.recentOrders.map(\.id)) == Set(orderIDs) && Set(view.openTickets.map(\.id)) == Set(ticketIDs)
            && view.metrics.orderCount == 2 && view.metrics.revenue.map(\.amountMinor) == [2400]
        }
        // The duplicate's id and email both lead to the survivor's view.
        let viaID = try await gateway.getCustomerView(.with { $0.customerID = duplicate.id }).view
        #expect(viaID.customer.id == survivor.id && viaID.recentOrders.count == 2)
        // An order placed with the merged id lands on the survivor.
        let late = try await orders.placeOrder(.with {
          $0.idempotencyKey = "o-3"
          $0.customerID = duplicate.id
          $0.channel = .web
          $0.currency = "GBP"
          $0.lines = [.with { $0.sku = "PEN"; $0.quantity = 1; $0.unitPriceMinor = 300 }]
        }).order
        #expect(late.customerID == survivor.id)
        // `rapport import customers` streams a CSV file and prints a summary; a bad row does not stop it.
        let csv = NSTemporaryDirectory() + "rapport-import-\(UUID().uuidString).csv"
        try """
          email,given_name,family_name,channel,tags
          percy@example.com,Percy,Shelley,store,poet;vip
          "not an email",Claire,Clairmont,web,
          MARY@example.com,Mary,,web,
          """.write(toFile: csv, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: csv) }
        let imported = try await Shell.run(
          try Stack.binaryDirectory() + "/rapport", ["import", "customers", csv, "--customer", "\(stack.address("customer"))"])
        #expect(imported.contains("3 rows") && imported.contains("1 created, 1 already known, 1 failed"))
        #expect(imported.contains("row 3: email: must be an email address"))
        let percy = try await customers.findCustomer(.with { $0.email = "percy@example.com" }).customer
        #expect(percy.tags == ["poet", "vip"] && percy.channel == .store)

        // Analytics scores the survivor (RFM against cut points it recomputes every second here).
        try await eventually(within: .seconds(15), "the view shows the survivor's RFM segment") {
          let metrics = try await gateway.getCustomerView(.with { $0.customerID = survivor.id }).view.metrics
          return metrics.rfm.segment != .unspecified && metrics.rfm.frequency == 3
        }
        // … and predicts: BG/NBD and Gamma-Gamma fitted to the suite's orders by the scheduled fit.
        try await eventually(within: .seconds(15), "the view shows the survivor's CLV and churn probability") {
          let metrics = try await gateway.getCustomerView(.with { $0.customerID = survivor.id }).view.metrics
          return metrics.hasPrediction && metrics.prediction.currency == metrics.rfm.monetary.currency
            && metrics.prediction.probabilityAlive > 0 && metrics.prediction.probabilityAlive <= 1
        }
        // A rule segment defined with `rapport segments put` counts the survivor at once.
        let rapport = try Stack.binaryDirectory() + "/rapport"
        let put = try await Shell.run(rapport, ["segments", "put", "buyers", "orders >= 3", "--analytics", "\(stack.address("analytics"))"])
        #expect(put.contains("buyers v1: 1 member(s)"), "\(put)")
        let listed = try await Shell.run(rapport, ["segments", "--analytics", "\(stack.address("analytics"))"])
        #expect(listed.contains("buyers  1 member(s)  v1  orders >= 3"), "\(listed)")
        // Tags and attributes: analytics reads them from the customer service when the feed says they
        // changed — Percy was imported with tags, the survivor gets an attribute now.
        let current = try await customers.getCustomer(.with { $0.customerID = survivor.id }).customer
        _ = try await customers.updateCustomer(.with {
          $0.customerID = survivor.id
          $0.expectedVersion = current.version
          $0.customer = .with { $0.attributes = ["tier": .with { $0.stringValue = "gold" }] }
          $0.updateMask = .with { $0.paths = ["attributes"] }
        })
        _ = try await Shell.run(rapport, ["segments", "put", "poets", "tagged(poet) or attribute(tier) = 'gold' and orders >= 3", "--analytics", "\(stack.address("analytics"))"])
        try await eventually(within: .seconds(10), "the segment counts the imported poet and the gold survivor") {
          let members = try await Shell.run(rapport, ["segments", "members", "poets", "--analytics", "\(stack.address("analytics"))"])
          return Set(members.split(separator: "\n").map(String.init)) == [percy.id, survivor.id]
        }
        // The same segment read from Python grpcio, a member per message and in pages.
        let python = try await runInterop(
          "segment_pages.py", ["\(stack.address("analytics"))", "poets"] + (stack.tlsDirectory.map { [$0] } ?? []))
        let streamed = python["members"] as? [String] ?? []
        #expect(Set(streamed) == [percy.id, survivor.id] && streamed.count == 2, "\(python)")
        #expect(python["pages"] as? [[String]] == streamed.map { [$0] }, "\(python)")
        #expect(python["whole"] as? [[String]] == [streamed], "\(python)")
        let bad = python["bad_page_size"] as? [String: String]
        #expect(bad?["code"] == "INVALID_ARGUMENT" && bad?["details"]?.contains("page_size") == true, "\(python)")
        // `rapport view` by the duplicate's email shows the survivor with all of it.
        let cli = try await Shell.run(
          try Stack.binaryDirectory() + "/rapport", ["view", "m.shelley@example.org", "--gateway", "\(stack.address("gateway"))"])
        #expect(cli.contains("id \(survivor.id)"))
        #expect(cli.contains("Recent orders (3)") && cli.contains("Open tickets (2)"))
        #expect(cli.contains("RFM ") && cli.contains("net revenue") && cli.contains("12-month CLV"), "\(cli)")
        #expect(cli.contains("segments: buyers"), "\(cli)")
        for id in orderIDs + ticketIDs { #expect(cli.contains(id)) }

        _ = try await customers.eraseCustomer(.with {
          $0.customerID = survivor.id
          $0.reason = "GDPR request 42"
        })
        try await eventually(within: .seconds(10), "support redacted the tickets") {
          let tickets = try await support.listTickets(.with { $0.customerID = survivor.id }).tickets
          return tickets.count == 2 && tickets.allSatisfy { $0.subject == "[erased]" && $0.body.isEmpty }
        }
        let view = try await gateway.getCustomerView(.with { $0.customerID = survivor.id }).view
        #expect(view.customer.state == .erased && view.customer.email.isEmpty && view.customer.givenName.isEmpty)
        #expect(view.recentOrders.count == 3)
        do {
          _ = try await orders.placeOrder(.with {
            $0.idempotencyKey = "o-4"
            $0.customerID = survivor.id
            $0.channel = .web
            $0.currency = "GBP"
            $0.lines = [.with { $0.sku = "PEN"; $0.quantity = 1; $0.unitPriceMinor = 300 }]
          })
          Issue.record("an order for an erased customer was accepted")
        } catch let error as RPCError {
          #expect(error.code == .failedPrecondition)
        }
      }
    }

    /// Runs Tests/EndToEndTests/interop/partner_client.py and returns the JSON it prints (over TLS when
    /// the stack runs with it).
    static func interop(_ stack: Stack, email: String) async throws -> [String: Any] {
      try await runInterop(
        "partner_client.py",
        ["\(stack.address("gateway"))", "\(stack.address("customer"))", email] + (stack.tlsDirectory.map { [$0] } ?? []))
    }
  }
}
