import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import SwiftProtobuf
import Testing

extension Executables {
  /// A shop bringing its past (issue 14): `rapport import orders FILE.csv` against the real executables,
  /// and analytics counting the imported orders at their original times.
  @Suite struct ImportTests {
    @Test func importedOrderHistoryIsCountedAtItsOriginalTimes() async throws {
      try await withStack("import") { stack in
        let csv = NSTemporaryDirectory() + "orders-\(UUID().uuidString).csv"
        try """
          reference,channel,placed_at,status,currency,email,sku,title,quantity,unit_price_minor,shipping_minor
          #5001,web,2025-01-15T10:00:00Z,delivered,EUR,history@example.com,TEA,Green tea,2,1500,495
          #5001,web,2025-01-15T10:00:00Z,delivered,EUR,history@example.com,MUG,Mug,1,2000,
          #5002,web,2025-02-20T09:30:00Z,paid,EUR,history@example.com,TEA,Green tea,1,1500,0
          #5003,web,2025-03-05T18:00:00Z,cancelled,EUR,history@example.com,MUG,Mug,3,2000,0
          #5004,web,2025-03-06T18:00:00Z,paid,EUR,history@example.com,MUG,Mug,x,2000,0
          #5005,store,2025-03-07T18:00:00Z,paid,EUR,history@example.com,MUG,Mug,-1,2000,0
          """.write(toFile: csv, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: csv) }
        let binary = try Stack.binaryDirectory() + "/rapport"
        let first = try await Shell.run(binary, ["import", "orders", csv, "--order", "\(stack.address("order"))"])
        #expect(first.contains("5 orders") && first.contains("3 created, 0 already known, 2 failed"), "\(first)")
        #expect(first.contains("row 6: quantity: 'x' is not an integer"), "\(first)")
        #expect(first.contains("row 7: order.lines[0].quantity"), "\(first)")
        let again = try await Shell.run(binary, ["import", "orders", csv, "--order", "\(stack.address("order"))"])
        #expect(again.contains("0 created, 3 already known, 2 failed"), "\(again)")

        let customer = try await stack.withClients {
          try await $0.customers.findCustomer(.with { $0.email = "history@example.com" }).customer.id
        }
        try await withClient(stack.address("analytics"), security: stack.clientSecurity) { client in
          let analytics = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client)
          // Monthly sales of 2025's first quarter: each order in the month it was placed, the cancelled
          // one left out — event times, not the time of the import.
          try await eventually(within: .seconds(15), "analytics applied the imported orders") {
            let metrics = try await analytics.getCustomerMetrics(.with { $0.customerID = customer }).metrics
            return metrics.orderCount == 3 && metrics.cancelledOrderCount == 1
          }
          let metrics = try await analytics.getCustomerMetrics(.with { $0.customerID = customer }).metrics
          #expect(metrics.firstOrderTime == .init(microsecondsOf: ISO8601DateFormatter().date(from: "2025-01-15T10:00:00Z")!))
          let net: [Int64] = [5_495 + 1_500]  // 2 × 1 500 + 2 000 + 495 shipping, then 1 500
          #expect(metrics.netRevenue.map(\.amountMinor) == net)
          let sales = try await analytics.getSalesSummary(.with {
            $0.from = .init(microsecondsOf: ISO8601DateFormatter().date(from: "2025-01-01T00:00:00Z")!)
            $0.to = .init(microsecondsOf: ISO8601DateFormatter().date(from: "2025-04-01T00:00:00Z")!)
            $0.granularity = .month
            $0.currency = "EUR"
          })
          let orders: [Int64] = [1, 1, 0], revenue: [Int64] = [5_495, 1_500, 0]
          let new: [Int64] = [1, 0, 0], returning: [Int64] = [0, 1, 0]
          #expect(sales.periods.map(\.orders) == orders)
          #expect(sales.periods.map(\.netRevenue.amountMinor) == revenue)
          #expect(sales.periods.map(\.newCustomers) == new)
          #expect(sales.periods.map(\.returningCustomers) == returning)

          // A rule segment reacts to the next order (the service's SegmentEvaluator, off the feed's path).
          let put = try await analytics.putSegment(.with {
            $0.id = "three-orders"
            $0.rule = "orders >= 3"
          })
          #expect(put.entered == 0)
          let placed = try await stack.withClients { clients in
            try await clients.orders.placeOrder(.with {
              $0.idempotencyKey = "after-import"
              $0.customerID = customer
              $0.channel = .web
              $0.currency = "EUR"
              $0.lines = [.with {
                $0.sku = "TEA"
                $0.title = "Green tea"
                $0.quantity = 1
                $0.unitPriceMinor = 1_500
              }]
            }).order.id
          }
          #expect(!placed.isEmpty)
          try await eventually(within: .seconds(15), "the third order put the customer in the segment") {
            try await analytics.getCustomerMetrics(.with { $0.customerID = customer }).metrics.segmentIds == ["three-orders"]
          }
        }
      }
    }

    /// While the customer service does not answer, ImportOrders refuses the stream as UNAVAILABLE (its
    /// customer lookups miss their 1 s deadline; nothing stored); `rapport import orders` sends the file
    /// again after waiting, and once the customer service answers, every row is imported, once.
    @Test func anImportRefusedAsUnavailableIsSentAgainUntilItCompletes() async throws {
      try await withStack("import-retry") { stack in
        let csv = NSTemporaryDirectory() + "orders-\(UUID().uuidString).csv"
        try """
          reference,channel,placed_at,status,currency,email,sku,title,quantity,unit_price_minor,shipping_minor
          #7001,web,2025-01-15T10:00:00Z,delivered,EUR,retry-1@example.com,TEA,Green tea,2,1500,0
          #7002,web,2025-02-20T09:30:00Z,paid,EUR,retry-2@example.com,MUG,Mug,1,2000,0
          #7003,store,2025-03-05T18:00:00Z,paid,EUR,retry-1@example.com,MUG,Mug,1,2000,0
          """.write(toFile: csv, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: csv) }
        let binary = try Stack.binaryDirectory() + "/rapport"
        let customers = stack.process("customer")
        customers.signal(SIGSTOP)
        let importing = Task { try await Shell.run(binary, ["import", "orders", csv, "--order", "\(stack.address("order"))"]) }
        // The first stream is refused after the 1 s deadline; the command waits 2 s before the next.
        try? await Task.sleep(for: .seconds(3))
        customers.signal(SIGCONT)
        let output = try await importing.value
        #expect(output.contains("sending the file again (attempt 2)"), "\(output)")
        #expect(output.contains("3 orders") && output.contains("3 created, 0 already known, 0 failed"), "\(output)")
        let again = try await Shell.run(binary, ["import", "orders", csv, "--order", "\(stack.address("order"))"])
        #expect(again.contains("0 created, 3 already known, 0 failed") && !again.contains("sending the file again"), "\(again)")
      }
    }

    /// `rapport seed` loads a synthetic shop through the import RPCs; a second run imports nothing twice.
    /// The order service runs with a 500 ms request idle limit: a long import stream whose client waits
    /// on flow control while the service works through what it has is not an idle client (before, the
    /// stream was ended DEADLINE_EXCEEDED "nothing received").
    @Test func aSeededShopLoadsThroughTheImportPathOnce() async throws {
      try await withStack("seed", settings: ["order": ["request-idle-timeout-ms": "500"]]) { stack in
        let rapport = try Stack.binaryDirectory() + "/rapport"
        let arguments = [
          "seed", "--customers", "60", "--orders", "1500", "--streams", "1", "--customer", "\(stack.address("customer"))",
          "--order", "\(stack.address("order"))",
        ]
        let first = try await Shell.run(rapport, arguments)
        #expect(first.contains("customers: 60 rows") && first.contains("60 created"), "\(first)")
        #expect(first.contains("orders: 1500 in") && first.contains("1500 created, 0 already known, 0 failed"), "\(first)")
        let again = try await Shell.run(rapport, arguments)
        #expect(again.contains("0 created, 1500 already known, 0 failed"), "\(again)")
        try await withClient(stack.address("analytics"), security: stack.clientSecurity) { client in
          let analytics = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client)
          try await eventually(within: .seconds(30), "analytics applied every seeded order") {
            try await analytics.getPipelineStatus(.init()).sources.first { $0.source == "order" }.map {
              $0.reachable && $0.backlog == 0 && $0.cursor > 1500
            } ?? false
          }
          // By default analytics keeps the zones a half or quarter hour off UTC (`--sub-hour-time-zones`),
          // built in the background over what is loaded.
          try await eventually(within: .seconds(60), "the sub-hour zones are kept and built") {
            let kept = try await analytics.getPipelineStatus(.init()).keptZones.filter(\.ready).map(\.zone)
            return ["Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns"].allSatisfy(kept.contains)
          }
        }
      }
    }
  }
}
