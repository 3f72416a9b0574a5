import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import SwiftProtobuf
import Testing

/// `ImportOrders` (issue 14): past orders with their original times and final status, idempotent by
/// (channel, reference), each row validated on its own.
@Suite(.hangLimit) struct OrderImportTests {
  static func stamp(_ text: String) -> Google_Protobuf_Timestamp {
    .init(microsecondsOf: ISO8601DateFormatter().date(from: text)!)
  }

  static func row(
    _ reference: String, _ customer: String, at time: String, _ status: Rapport_Order_V1_OrderStatus, quantity: Int64 = 2,
    number: Int64 = 0
  ) -> Rapport_Order_V1_ImportOrdersRequest {
    .with {
      $0.rowNumber = number
      $0.order = order("", customer: customer, lines: 1)
      $0.order.channelOrderReference = reference
      $0.order.lines[0].quantity = quantity
      $0.placedTime = stamp(time)
      $0.status = status
    }
  }

  /// Bad rows in a stream: a malformed customer id and an oversized title fail their row; a NUL anywhere
  /// in the stream is refused by the platform before the handler (INVALID_ARGUMENT naming the field), and
  /// nothing of that stream is stored.
  @Test func malformedRowsFailAloneAndANulRefusesTheStream() async throws {
    try await withOrders { env in
      let malformed = Self.row("#3001", "not-a-uuid", at: "2024-05-01T10:00:00Z", .paid, number: 2)
      let long = Self.row("#3002", env.customerID, at: "2024-05-01T10:00:00Z", .paid, number: 3).changed {
        $0.order.lines[0].title = String(repeating: "t", count: 10_000)
      }
      let good = Self.row("#3003", env.customerID, at: "2024-05-01T10:00:00Z", .paid, number: 4)
      let response = try await env.orders.importOrders { writer in try await writer.write(contentsOf: [malformed, long, good]) }
      #expect((response.created, response.failed) == (1, 2))
      #expect(response.errors.map(\.field) == ["order.customer_id", "order.lines[0].title"], "\(response.errors)")
      let nul = Self.row("#3004", env.customerID, at: "2024-05-01T10:00:00Z", .paid, number: 5).changed {
        $0.order.lines[0].title = "tea\u{0}"
      }
      await expectStatus(.invalidArgument, field: "order.lines[0].title", mentioning: "NUL") {
        try await env.orders.importOrders { writer in try await writer.write(nul) }
      }
      #expect(try await count("orders.orders", env.database) == 1)
    }
  }

  @Test func pastOrdersKeepTheirTimesAndStatusesAndAnImportRunsTwiceSafely() async throws {
    try await withOrders { env in
      let good = [
        Self.row("#1001", env.customerID, at: "2024-05-01T10:00:00Z", .delivered, number: 2),
        Self.row("#1002", env.customerID, at: "2024-06-01T10:00:00Z", .cancelled, number: 3),
        Self.row("#1003", env.customerID, at: "2024-07-01T10:00:00Z", .refunded, number: 4),
        Self.row("#1004", env.customerID, at: "2024-08-01T10:00:00Z", .pending, number: 5),
      ]
      var byIdentity = Self.row("#1005", "", at: "2024-09-01T10:00:00Z", .paid, number: 6)
      byIdentity.order.customerIdentities = [.with {
        $0.kind = .email
        $0.value = "returning@example.com"
      }]
      let bad = [
        Self.row("#2001", env.customerID, at: "2024-05-01T10:00:00Z", .paid, quantity: -1, number: 7),
        Self.row("#2002", env.customerID, at: "2100-01-01T00:00:00Z", .paid, number: 8),
        Self.row("#2003", UUID().uuidString, at: "2024-05-01T10:00:00Z", .paid, number: 9),
        Self.row("", env.customerID, at: "2024-05-01T10:00:00Z", .paid, number: 10),
        Self.row("#2005", env.customerID, at: "2024-05-01T10:00:00Z", .paid, number: 11).changed { $0.clearPlacedTime() },
        Self.row("#2006", env.customerID, at: "2024-05-01T10:00:00Z", .paid, number: 12).changed {
          $0.order.idempotencyKey = "mine"
        },
      ]
      let rows = good + [byIdentity] + bad
      let first = try await env.orders.importOrders { writer in try await writer.write(contentsOf: rows) }
      #expect((first.rows, first.created, first.existing, first.failed) == (11, 5, 0, 6))
      #expect(first.errors.map(\.rowNumber) == [7, 8, 9, 10, 11, 12])
      #expect(first.errors.map(\.field) == [
        "order.lines[0].quantity", "placed_time", "", "order.channel_order_reference", "placed_time", "order.idempotency_key",
      ], "\(first.errors)")
      #expect(first.errors[2].message.contains("customer"))

      // Each order as GetOrder shows it: the original time, the status reached, the money captured.
      let listed = try await env.orders.listOrders(.with {
        $0.customerID = env.customerID
        $0.pageSize = 10
      }).orders.sorted { $0.channelOrderReference < $1.channelOrderReference }
      #expect(listed.map(\.channelOrderReference) == ["#1001", "#1002", "#1003", "#1004"])
      #expect(listed.map(\.status) == [.delivered, .cancelled, .refunded, .pending])
      #expect(listed.map(\.createTime) == good.map(\.placedTime))
      let delivered = try await env.get(listed[0].id)
      #expect(delivered.amountPaid.amountMinor == delivered.total.amountMinor && delivered.total.amountMinor == 2_500)
      #expect(delivered.deliverTime == good[0].placedTime && delivered.history.map(\.reason) == ["imported"])
      let refunded = try await env.get(listed[2].id)
      #expect(refunded.amountRefunded.amountMinor == 2_500)

      // The events, dated as the orders were: what analytics computes from. One customer's orders are
      // published in stream order; different customers' rows are imported concurrently.
      let placed = try await env.events("OrderPlaced")
      let ofCustomer = placed.filter { $0.orderPlaced.customerID == env.customerID }
      #expect(placed.count == 5 && ofCustomer.map(\.orderPlaced.placedAt) == good.map(\.placedTime))
      #expect(Set(placed.map(\.occurredAt)) == Set((good + [byIdentity]).map(\.placedTime)))
      #expect(Set(placed.map(\.orderPlaced.placedAt)) == Set((good + [byIdentity]).map(\.placedTime)))
      let cancelled = try await env.events("OrderCancelled")
      #expect(cancelled.count == 1 && cancelled[0].occurredAt == good[1].placedTime)
      let refunds = try await env.events("OrderRefunded")
      #expect(refunds.count == 1 && refunds[0].orderRefunded.amountRefunded.amountMinor == 2_500 && refunds[0].orderRefunded.full)
      #expect(try await env.events("OrderDelivered").count == 1)
      let outbox = try await count("orders.outbox", env.database)

      // The same file again: nothing new, nothing published; the same reference with other content fails.
      let changed = Self.row("#1001", env.customerID, at: "2024-05-02T10:00:00Z", .delivered, number: 13)
      let second = try await env.orders.importOrders { writer in try await writer.write(contentsOf: rows + [changed]) }
      #expect((second.rows, second.created, second.existing, second.failed) == (12, 0, 5, 7))
      #expect(second.errors.last?.field == "order.channel_order_reference" && second.errors.last?.rowNumber == 13)
      #expect(try await count("orders.orders", env.database) == 5)
      #expect(try await count("orders.outbox", env.database) == outbox)
    }
  }
}
