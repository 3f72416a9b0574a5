import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportCore
import RapportProtos
import RapportTesting
import Testing

/// The five real executables, started as child processes on free loopback ports against a fresh
/// database, called over HTTP/2 — from Swift, and from Python as a partner would.
@Suite(.serialized) struct EndToEndTests {
  @Test func customerOrderTicketFlowThroughTheViewAndSurvivesALostService() async throws {
    let database = try await TestDatabase.create()
    let directory = NSTemporaryDirectory() + "rapport-e2e-\(UUID().uuidString)"
    let stack = try await Stack.start(
      dataDirectory: directory, databaseURL: database, ports: [:], logger: testLogger("e2e"))
    do {
      try await exercise(stack)
      await stack.stop()
      try? FileManager.default.removeItem(atPath: directory)
    } catch {
      await stack.stop()
      for entry in stack.processes { print("--- \(entry.name) log:\n\(entry.process.logTail())") }
      throw error
    }
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
      let partner = try interop(stack, email: "e2e@example.com")
      #expect(partner["found_id"] as? String == customer.id)
      #expect(partner["view_customer_id"] as? String == customer.id)
      #expect(partner["created_email"] as? String == "python.partner@example.com")
      #expect((partner["bad_request"] as? [String: Any])?["code"] as? String == "INVALID_ARGUMENT")
      #expect(partner["view_order_totals"] as? [Int] == [1497])

      // With the support service gone, the view still answers in time, tickets UNAVAILABLE.
      await stack.process("support").stop()
      var options = CallOptions.defaults
      options.timeout = .seconds(1)
      let started = ContinuousClock.now
      let partial = try await gateway.getCustomerView(.with { $0.customerID = customer.id }, options: options).view
      #expect(ContinuousClock.now - started < .seconds(1))
      let codes = Dictionary(uniqueKeysWithValues: partial.sections.map { ($0.name, $0.code) })
      #expect(codes == ["customer": 0, "orders": 0, "tickets": 14, "metrics": 0])
      #expect(partial.recentOrders.count == 1)
    }
  }

  /// Runs Tests/EndToEndTests/interop/partner_client.py and returns the JSON it prints.
  private func interop(_ stack: Stack, email: String) throws -> [String: Any] {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let output = try Shell.run(
      try Shell.which("python3"),
      [
        root.appendingPathComponent("Tests/EndToEndTests/interop/partner_client.py").path,
        root.appendingPathComponent("Protos").path, "\(stack.address("gateway"))", "\(stack.address("customer"))",
        email,
      ])
    let line = output.split(separator: "\n").last.map(String.init) ?? ""
    guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
      throw TestFailure("partner client printed no JSON: \(output)")
    }
    return object
  }
}
