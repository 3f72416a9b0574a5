import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import OrderService
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import SupportService
import Testing

@testable import AnalyticsService

@Suite(.hangLimit) struct AnalyticsServiceTests {
  @Test func metricsCatchUpFromFeedsThatStartLaterAndReplaysChangeNothing() async throws {
    try await withCustomerService { customers, database, customerAt in
      let customer = try await customers.createCustomer(.with { $0.email = "metrics@example.com" }).customer.id
      // Analytics starts first, pointed at order and support services that are not up yet. Their ports
      // stay bound (connections refused) until just before each starts: a port only found free could be
      // taken meanwhile, by any socket of the tests running alongside (seen once in CI).
      let orderHold = try SilentListener(listening: false)
      let supportHold = try SilentListener(listening: false)
      let (orderPort, supportPort) = (orderHold.port, supportHold.port)
      let analytics = try AnalyticsApp.build(
        config: testConfig("analytics", database),
        orderAddress: HostPort(host: "127.0.0.1", port: orderPort),
        supportAddress: HostPort(host: "127.0.0.1", port: supportPort), logger: testLogger("analytics"))
      try await withRunningService(analytics) { analyticsAt in
        let orderApp = try OrderApp.build(
          config: testConfig("order", database, port: orderPort), customerAddress: customerAt,
          customerTimeout: .seconds(10), logger: testLogger("order"))
        let supportApp = try SupportApp.build(
          config: testConfig("support", database, port: supportPort), customerAddress: customerAt,
          upstreamTimeout: .seconds(10), logger: testLogger("support"))
        orderHold.stop()
        try await withRunningService(orderApp) { orderAt in
          supportHold.stop()
          try await withRunningService(supportApp) { supportAt in
            try await withClient(to: orderAt) { client in
              let orders = Rapport_Order_V1_OrderService.Client(wrapping: client)
              _ = try await orders.placeOrder(order("a", customer: customer))
              var gbp = order("b", customer: customer, lines: 1)
              gbp.currency = "GBP"
              _ = try await orders.placeOrder(gbp)
            }
            try await withClient(to: supportAt) { client in
              _ = try await Rapport_Support_V1_SupportService.Client(wrapping: client).openTicket(ticket(customer))
            }
            let metrics = try await withClient(to: analyticsAt) { client in
              let api = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client)
              // The feeds reconnect with backoff (up to 5 s, plus the channel's own up to 2 s) after failing
              // while the sources were down; 10 s was missed once on a saturated 2-core machine.
              try await eventually(within: .seconds(30), "analytics consumed 2 orders and 1 ticket") {
                let m = try await api.getCustomerMetrics(.with { $0.customerID = customer }).metrics
                return m.orderCount == 2 && m.openTicketCount == 1
              }
              let single = try await api.getCustomerMetrics(.with { $0.customerID = customer }).metrics
              // The batch read answers each id as the single read does, in order, repeats and unknown ids included.
              let unknown = UUID().uuidString.lowercased()
              let batch = try await api.batchGetCustomerMetrics(.with { $0.customerIds = [customer, unknown, customer] }).results
              #expect(batch.map(\.metrics) == [single, try await api.getCustomerMetrics(.with { $0.customerID = unknown }).metrics, single])
              await expectStatus(.invalidArgument, field: "customer_ids[0]") {
                try await api.batchGetCustomerMetrics(.with { $0.customerIds = ["x"] })
              }
              return single
            }
            #expect(metrics.revenue.map(\.currency) == ["EUR", "GBP"])
            #expect(metrics.revenue.map(\.amountMinor) == [1250 * 3, 1250])
            #expect(metrics.hasFirstOrderTime && metrics.hasLastOrderTime && metrics.hasAsOf)

            // A redelivered event (at or below the stored cursor) changes nothing.
            let store = AnalyticsStore(client: try #require(analytics.postgres), logger: testLogger("replay"))
            var replay = Rapport_Events_V1_Event()
            replay.sequence = 1
            replay.payload = .orderPlaced(.with {
              $0.customerID = customer
              $0.total = .with { $0.currency = "EUR"; $0.amountMinor = 999 }
            })
            let applied = try await store.apply([replay], from: "order")
            #expect(applied == 0)
            let after = try await store.metrics(customerID: try #require(UUID(uuidString: customer)))
            #expect(after.orderCount == 2)
            #expect(after.revenue.map(\.amountMinor) == [1250 * 3, 1250])
          }
        }
      }
    }
  }

  @Test func pipelineStatusShowsEachFeedsCursorBacklogAndLastFailure() async throws {
    try await withCustomerService { customers, database, customerAt in
      let customer = try await customers.createCustomer(.with { $0.email = "pipeline@example.com" }).customer.id
      let refusing = try SilentListener(listening: false)
      defer { refusing.stop() }
      let orderApp = try OrderApp.build(
        config: testConfig("order", database), customerAddress: customerAt, customerTimeout: .seconds(10),
        logger: testLogger("order"))
      try await withRunningService(orderApp) { orderAt in
        try await withClient(to: orderAt) { client in
          let orders = Rapport_Order_V1_OrderService.Client(wrapping: client)
          _ = try await orders.placeOrder(order("p1", customer: customer))
          _ = try await orders.placeOrder(order("p2", customer: customer))
          // The source's side: what a consumer at a cursor has yet to read.
          let feed = Rapport_Events_V1_EventFeed.Client(wrapping: client)
          let placed = try await feed.getBacklog(.with { $0.types = [Rapport_Events_V1_OrderPlaced.eventType] })
          #expect(placed.pendingEvents == 2 && placed.hasOldestPendingTime && placed.headSequence >= 2)
          let caughtUp = try await feed.getBacklog(.with { $0.afterSequence = placed.headSequence })
          #expect(caughtUp.pendingEvents == 0 && !caughtUp.hasOldestPendingTime)
          let other = try await feed.getBacklog(.with { $0.types = [Rapport_Events_V1_OrderRefunded.eventType] })
          #expect(other.pendingEvents == 0)
          await expectStatus(.invalidArgument, field: "after_sequence") {
            try await feed.getBacklog(.with { $0.afterSequence = -1 })
          }
        }
        let analytics = try AnalyticsApp.build(
          config: testConfig("analytics", database), orderAddress: orderAt,
          supportAddress: HostPort(host: "127.0.0.1", port: refusing.port), logger: testLogger("analytics"))
        try await withRunningService(analytics) { analyticsAt in
          try await withClient(to: analyticsAt) { client in
            let api = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client)
            try await eventually(within: .seconds(30), "order applied and caught up; support down with its failure") {
              let sources = try await api.getPipelineStatus(.init()).sources
              guard let order = sources.first(where: { $0.source == "order" }),
                let support = sources.first(where: { $0.source == "support" })
              else { return false }
              return order.reachable && order.backlog == 0 && order.cursor >= 2 && order.hasLastAppliedTime
                && order.lagSeconds == 0 && order.headSequence >= order.cursor
                && !support.reachable && support.cursor == 0 && support.lastError.hasPrefix("unavailable")
                && support.hasLastErrorTime
            }
          }
        }
      }
    }
  }

  @Test func aCustomerWithoutEventsHasZeroMetricsAndBadIdsAreRefused() async throws {
    let database = try await TestDatabase.create()
    let refusing = try SilentListener(listening: false)
    defer { refusing.stop() }
    let closed = HostPort(host: "127.0.0.1", port: refusing.port)
    let analytics = try AnalyticsApp.build(
      config: testConfig("analytics", database), orderAddress: closed, supportAddress: closed, logger: testLogger("analytics"))
    try await withRunningService(analytics) { address in
      try await withClient(to: address) { client in
        let api = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client)
        let id = UUID().uuidString.lowercased()
        let metrics = try await api.getCustomerMetrics(.with { $0.customerID = id }).metrics
        #expect(metrics.customerID == id)
        #expect(metrics.orderCount == 0 && metrics.revenue.isEmpty && !metrics.hasAsOf)
        await expectStatus(.invalidArgument, field: "customer_id") {
          try await api.getCustomerMetrics(.with { $0.customerID = "x" })
        }
      }
    }
  }
}
