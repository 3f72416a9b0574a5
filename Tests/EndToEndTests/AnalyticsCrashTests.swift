import Foundation
import GRPCCore
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import Synchronization
import Testing

extension Executables {
  /// The analytics executable is SIGKILLed while orders stream in and is started again: every event is
  /// applied exactly once (its effect and the feed cursor commit together), so the totals afterwards are
  /// those of every order placed, none lost and none counted twice.
  @Suite struct AnalyticsCrashTests {
    @Test func killingAnalyticsMidStreamLosesAndDoublesNothing() async throws {
      try await withStack("analytics-kill") { stack in
        try await stack.withClients { clients in
          let customer = try await clients.customers.createCustomer(.with { $0.email = "kill@example.com" }).customer.id
          let total = 200
          let acknowledged = Atomic(0)
          // A shop's client: each order is retried until acknowledged (the idempotency key makes a retry
          // safe). On a loaded machine a call can fail (the order service's 1 s check with the customer
          // service); giving up would end the stream before the kill.
          let placing = Task {
            for index in 0..<total {
              var attempts = 0
              while true {
                do {
                  _ = try await clients.orders.placeOrder(PartnerEndToEndTests.order("kill-\(index)", customer))
                  break
                } catch {
                  attempts += 1
                  if attempts == 20 { throw error }
                  try await Task.sleep(for: .milliseconds(200))
                }
              }
              acknowledged.add(1, ordering: .relaxed)
            }
          }
          // Kill while the stream is flowing: after 50 orders, with 150 still to come.
          try await eventually(within: .seconds(90), "50 orders placed") { acknowledged.load(ordering: .relaxed) >= 50 }
          let analytics = try #require(stack.processes.first { $0.name == "analytics" }).process
          analytics.signal(SIGKILL)
          try await placing.value
          let cursorAtKill = try await TestDatabase.scalar(
            "SELECT coalesce(max(last_sequence), 0)::bigint FROM analytics.feed_cursors WHERE source = 'order'",
            on: stack.databaseURL)
          print("analytics kill: order feed cursor \(cursorAtKill) at the kill, \(total) orders placed")
          try await stack.restart("analytics")

          try await eventually(within: .seconds(60), "analytics caught up after its restart") {
            let view = try await clients.gateway.getCustomerView(.with { $0.customerID = customer }).view
            return view.metrics.orderCount >= Int64(total)
          }
          let metrics = try await clients.gateway.getCustomerView(.with { $0.customerID = customer }).view.metrics
          let each = PartnerEndToEndTests.order("x", customer).lines.reduce(Int64(0)) { $0 + $1.quantity * $1.unitPriceMinor }
          #expect(metrics.orderCount == Int64(total))
          #expect(metrics.netRevenue == [.with { $0.currency = "EUR"; $0.amountMinor = each * Int64(total) }])
          let stored = try await TestDatabase.scalar("SELECT count(*)::bigint FROM analytics.orders", on: stack.databaseURL)
          #expect(stored == total)
          #expect(cursorAtKill < total, "the kill came before analytics had applied every order")
        }
      }
    }
  }
}
