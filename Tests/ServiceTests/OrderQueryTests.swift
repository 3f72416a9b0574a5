import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import SwiftProtobuf
import Testing

@Suite(.hangLimit) struct OrderQueryTests {
  @Test func listingFiltersByCustomerStatusChannelAndCreationTimeWithStablePages() async throws {
    try await withOrders { env in
      let other = try await env.customers.createCustomer(.with { $0.email = "other@example.com" }).customer
      let start = Google_Protobuf_Timestamp(date: env.clock.wallClock.now)
      var placed: [Rapport_Order_V1_Order] = []
      for index in 0..<6 {
        var request = order("q\(index)", customer: index == 5 ? other.id : env.customerID)
        request.channel = index % 2 == 0 ? .web : .mobile
        placed.append(try await env.orders.placeOrder(request).order)
        env.clock.advance(by: 3600)
      }
      _ = try await env.orders.recordPayment(payment(placed[1].id, 3750, reference: "q-pay"))
      _ = try await env.orders.cancelOrder(.with {
        $0.orderID = placed[2].id
        $0.reason = "duplicate"
      })
      func ids(_ request: Rapport_Order_V1_ListOrdersRequest) async throws -> [String] {
        var all: [String] = []
        var request = request
        request.pageSize = 2
        repeat {
          let page = try await env.orders.listOrders(request)
          all += page.orders.map(\.id)
          request.pageToken = page.nextPageToken
        } while !request.pageToken.isEmpty
        return all
      }
      let newestFirst = placed.map(\.id).reversed()
      #expect(try await ids(.init()) == Array(newestFirst))
      #expect(try await ids(.with { $0.customerID = env.customerID }) == Array(newestFirst.dropFirst()))
      #expect(try await ids(.with { $0.statuses = [.paid, .cancelled] }) == [placed[2].id, placed[1].id])
      #expect(try await ids(.with { $0.channel = .mobile }) == [placed[5].id, placed[3].id, placed[1].id])
      #expect(
        try await ids(.with {
          $0.createdAfter = Google_Protobuf_Timestamp(seconds: start.seconds + 3600, nanos: 0)
          $0.createdBefore = Google_Protobuf_Timestamp(seconds: start.seconds + 3 * 3600, nanos: 0)
        }) == [placed[2].id, placed[1].id])
      await expectStatus(.invalidArgument, field: "statuses[0]") {
        try await env.orders.listOrders(.with { $0.statuses = [.unspecified] })
      }
      await expectStatus(.invalidArgument, field: "customer_id") {
        try await env.orders.listOrders(.with { $0.customerID = "me" })
      }
    }
  }

  @Test func theSummaryCountsOrdersTotalsPerCurrencyRefundsAndOpenOrders() async throws {
    try await withOrders { env in
      let empty = try await env.orders.getCustomerOrderSummary(.with { $0.customerID = env.customerID }).summary
      #expect(empty.orderCount == 0 && empty.totals.isEmpty && !empty.hasFirstOrderTime)
      let first = try await env.place("s1")  // 3750 EUR
      env.clock.advance(by: 86_400)
      var pounds = order("s2", customer: env.customerID, lines: 1)
      pounds.currency = "GBP"
      _ = try await env.orders.placeOrder(pounds)  // 1250 GBP
      let cancelled = try await env.place("s3")
      _ = try await env.orders.cancelOrder(.with {
        $0.orderID = cancelled.id
        $0.reason = "test"
      })
      _ = try await env.orders.recordPayment(payment(first.id, 3750, reference: "s-pay"))
      _ = try await env.orders.refundOrder(refund(first.id, 750, reference: "s-ref"))
      let summary = try await env.orders.getCustomerOrderSummary(.with { $0.customerID = env.customerID }).summary
      #expect(summary.orderCount == 3)
      #expect(summary.openOrderCount == 2)
      #expect(summary.totals.map { "\($0.currency) \($0.amountMinor)" } == ["EUR 3750", "GBP 1250"])
      #expect(summary.refunded.map { "\($0.currency) \($0.amountMinor)" } == ["EUR 750"])
      #expect(summary.firstOrderTime == first.createTime)
      #expect(summary.lastOrderTime.seconds - summary.firstOrderTime.seconds == 86_400)
      await expectStatus(.invalidArgument, field: "customer_id") {
        try await env.orders.getCustomerOrderSummary(.with { $0.customerID = "" })
      }
      // The overview is the same summary plus the newest orders, in one call.
      let overview = try await env.orders.getCustomerOrderOverview(.with {
        $0.customerID = env.customerID
        $0.recentOrderLimit = 2
      })
      #expect(overview.summary == summary)
      let newestFirst = try await env.orders.listOrders(.with {
        $0.customerID = env.customerID
        $0.pageSize = 2
      }).orders
      #expect(overview.recentOrders.map(\.id) == newestFirst.map(\.id) && newestFirst.count == 2)
      let defaults = try await env.orders.getCustomerOrderOverview(.with { $0.customerID = env.customerID })
      #expect(defaults.recentOrders.count == 3)
      #expect(defaults.recentOrders.allSatisfy { !$0.lines.isEmpty })
      let nobody = UUID().uuidString.lowercased()
      let none = try await env.orders.getCustomerOrderOverview(.with { $0.customerID = nobody })
      #expect(none.summary == .with { $0.customerID = nobody } && none.recentOrders.isEmpty)
      await expectStatus(.invalidArgument, field: "recent_order_limit") {
        try await env.orders.getCustomerOrderOverview(.with {
          $0.customerID = env.customerID
          $0.recentOrderLimit = 51
        })
      }
    }
  }
}
