import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import Testing

@testable import AnalyticsService

/// Recommendations on a hand-built basket set (docs/ANALYTICS.md, "Recommendations"), every number
/// worked out by hand:
///
///     u1: A B C    u2: A B    u3: B C D    u4: A (60 days ago) D    u5: E
///
/// Customers per product: A 3, B 3, C 2, D 2, E 1. Customers per pair: AB 2, AC 1, AD 1, BC 2, BD 1,
/// CD 1. Jaccard: AB 2/4, AC 1/4, AD 1/4, BC 2/3, BD 1/4, CD 1/3.
@Suite(.hangLimit) struct AnalyticsRecommendationTests {
  static func order(_ customer: UUID, daysAgo: Double = 0, _ skus: String...) -> Rapport_Events_V1_Event.OneOf_Payload {
    .orderPlaced(.with {
      $0.orderID = UUID().uuidString
      $0.customerID = customer.uuidString
      $0.channel = .web
      $0.placedAt = .init(microsecondsOf: Date().addingTimeInterval(-daysAgo * 86_400))
      $0.total = .money(Int64(skus.count) * 1_000, "EUR")
      $0.lines = skus.map { sku in
        .with {
          $0.sku = sku
          $0.title = "Product \(sku)"
          $0.quantity = 1
          $0.unitPriceMinor = 1_000
        }
      }
    })
  }

  @Test func similarProductsAndRecommendationsFollowJaccardAndTimeDecay() async throws {
    try await AnalyticsRfmTests().withHarness { harness in
      let (u1, u2, u3, u4, u5, newcomer) = (UUID(), UUID(), UUID(), UUID(), UUID(), UUID())
      // In two batches, the second adding to the first: the counts are incremental.
      try await harness.apply("order", Self.order(u1, "A", "B"), Self.order(u2, "A", "B"), Self.order(u4, daysAgo: 60, "A"))
      try await harness.store.addingPendingPurchases()  // the service's pass
      try await harness.apply(
        "order", Self.order(u1, "C"), Self.order(u3, "B", "C", "D"), Self.order(u4, "D"), Self.order(u5, "E"),
        Self.order(u2, "A"))  // a repeat purchase: no new pair
      let store = harness.store

      let likeA = try #require(try await store.similarProducts("A", limit: 10))
      #expect(likeA.map(\.sku) == ["B", "C", "D"])
      #expect(likeA.map(\.similarity) == [0.5, 0.25, 0.25] && likeA.map(\.commonCustomers) == [2, 1, 1])
      let likeC = try #require(try await store.similarProducts("C", limit: 2))
      #expect(likeC.map(\.sku) == ["B", "D"] && abs(likeC[0].similarity - 2.0 / 3) < 1e-12)
      #expect(try await store.similarProducts("E", limit: 10)?.isEmpty == true)
      #expect(try await store.similarProducts("Z", limit: 10) == nil)

      // u2 (A and B, bought now, the repeat A adding weight to A): C scores
      // (2·1/4 + 1·2/3) / 3 = 0.3889, D (2·1/4 + 1·1/4) / 3 = 0.25; E is filled in as a top seller.
      let forU2 = try await store.recommend(u2, limit: 3)
      #expect(forU2.map(\.sku) == ["C", "D", "E"])
      #expect(forU2.map(\.reason) == [.similar, .similar, .topSeller])
      #expect(abs(forU2[0].score - (2.0 / 4 + 2.0 / 3) / 3) < 1e-6 && abs(forU2[1].score - 0.75 / 3) < 1e-6)

      // u4 bought A 60 days ago (two half-lives: weight 1/4) and D now (weight 1): C wins,
      // (1/4·1/4 + 1·1/3) / 1.25 = 0.3167, over B, (1/4·1/2 + 1·1/4) / 1.25 = 0.3. Without the decay B
      // would win (0.75 against 0.583).
      let forU4 = try await store.recommend(u4, limit: 2)
      #expect(forU4.map(\.sku) == ["C", "B"])
      #expect(abs(forU4[0].score - (0.25 * 0.25 + 1.0 / 3) / 1.25) < 1e-6)
      #expect(abs(forU4[1].score - (0.25 * 0.5 + 0.25) / 1.25) < 1e-6)

      // A customer with no purchase: top sellers by customers, then units (A 4 units, B 3), then SKU.
      let cold = try await store.recommend(newcomer, limit: 10)
      #expect(cold.map(\.sku) == ["A", "B", "C", "D", "E"] && cold.allSatisfy { $0.reason == .topSeller })
      // Never what the customer already bought.
      #expect(try await store.recommend(u5, limit: 10).map(\.sku) == ["A", "B", "C", "D"])

      // The metrics (and so the 360° view) carry the same three, read in the metrics' one statement;
      // none for a customer without orders, nor when the caller does not ask for them.
      #expect(try await store.metrics(customerID: u2).recommendations == forU2)
      #expect(try await store.metrics(customerID: u4).recommendations == (try await store.recommend(u4, limit: 3)))
      #expect(try await store.metrics(customerID: newcomer).recommendations.isEmpty)
      #expect(try await store.metrics(customerID: u2, withRecommendations: false).recommendations.isEmpty)
      // A customer whose only order has no lines has an order: top sellers.
      let lineless = UUID()
      try await harness.apply("order", Self.order(lineless))
      #expect(try await store.metrics(customerID: lineless).recommendations.map(\.sku) == ["A", "B", "C"])
    }
  }

  /// The order feed only marks its orders pending; passes add them (here one order per pass), a merge
  /// adds what is pending first (the duplicate's purchases count as theirs), and a read adds the rest:
  ///
  ///     u1: A B    u2: A C    u3: B C    u4: A D, then merged into u1    u1 (with u4's): C
  ///
  /// Customers per product: A 3 (u1, u2, u4), B 2, C 3, D 1; per pair: AC 2, BC 2, CD 1 (u1 had D from
  /// u4). Similar to C: B 2/3, A 2/4, D 1/3. Had u4's order been added after the merge, as u1's, A would
  /// count 2 customers and tie with B.
  @Test func pendingPurchasesAreAddedByPassesBeforeMergesAndBeforeReads() async throws {
    try await AnalyticsRfmTests().withHarness { harness in
      let store = harness.store
      let pending = {
        let rows = try await store.client.query("SELECT count(*) FROM analytics.purchases_pending", logger: testLogger("test"))
        var count = -1
        for try await n in rows.decode(Int.self) { count = n }
        return count
      }
      let (u1, u2, u3, u4) = (UUID(), UUID(), UUID(), UUID())
      try await harness.apply(
        "order", Self.order(u1, "A", "B"), Self.order(u2, "A", "C"), Self.order(u3, "B", "C"), Self.order(u4, "A", "D"))
      #expect(try await pending() == 4)
      try await store.addingPendingPurchases(limit: 1)
      try await store.addingPendingPurchases(limit: 1)
      #expect(try await pending() == 2)
      try await harness.apply("customer", .customerMerged(.with { $0.survivorID = u1.uuidString; $0.duplicateID = u4.uuidString }))
      #expect(try await pending() == 0)
      try await harness.apply("order", Self.order(u1, "C"))
      #expect(try await pending() == 1)

      let likeC = try #require(try await store.similarProducts("C", limit: 10))
      #expect(try await pending() == 0)
      #expect(likeC.map(\.sku) == ["B", "A", "D"] && likeC.map(\.commonCustomers) == [2, 2, 1])
      #expect(zip(likeC.map(\.similarity), [2.0 / 3, 0.5, 1.0 / 3]).allSatisfy { abs($0 - $1) < 1e-12 })
      // u1 holds all four products now (u4's moved to them): only top sellers are left, and none.
      #expect(try await store.recommend(u1, limit: 10).isEmpty)
      // A read of the metrics adds what is pending too.
      try await harness.apply("order", Self.order(u2, "E"))
      #expect(try await store.metrics(customerID: u3).recommendations.map(\.sku) == ["A", "D", "E"])
      #expect(try await pending() == 0)
    }
  }

  /// Ranking reads products and pairs held in memory. This process's passes change them in place; a
  /// pass of another replica (another store, with its own model) moves the tables' version past the one
  /// held, and the next read loads them. Either way the model equals one loaded from the tables.
  @Test func theModelInMemoryFollowsThisProcessesPassesAndLoadsAnotherReplicas() async throws {
    try await AnalyticsRfmTests().withHarness { harness in
      let store = harness.store
      var replica = store
      replica.recommendations = RecommendationCache()
      let customers = (0..<6).map { _ in UUID() }
      try await harness.apply("order", Self.order(customers[0], "A", "B"), Self.order(customers[1], "A", "C"))
      #expect(store.recommendations.version == nil)
      #expect(try await store.similarProducts("A", limit: 10)?.map(\.sku) == ["B", "C"])  // adds them, then loads
      let loaded = try #require(store.recommendations.version)

      // This process's passes: applied in place, one version each.
      try await harness.apply("order", Self.order(customers[2], "B", "C", "D"))
      try await store.addingPendingPurchases()
      try await harness.apply("order", Self.order(customers[0], "D"), Self.order(customers[3], "E", "A"))
      try await store.addingPendingPurchases()
      #expect(store.recommendations.version == loaded + 2)
      try await Self.expectSameRanking(store, customers: customers)

      // Another replica's pass: the model held is behind; the next read loads the tables.
      try await harness.apply("order", Self.order(customers[4], "D", "E"), Self.order(customers[5], "A"))
      try await replica.addingPendingPurchases()
      #expect(store.recommendations.version == loaded + 2)
      let likeD = try #require(try await store.similarProducts("D", limit: 10))
      #expect(store.recommendations.version == loaded + 3)
      #expect(likeD.first { $0.sku == "E" }?.commonCustomers == 1)  // customers[4]'s, counted by the replica

      try await Self.expectSameRanking(store, replica, customers: customers)
    }
  }

  /// `stores` rank every product and every customer as a model loaded from the tables now does.
  static func expectSameRanking(_ stores: AnalyticsStore..., customers: [UUID]) async throws {
    var fresh = stores[0]
    fresh.recommendations = RecommendationCache()
    for store in stores {
      for sku in ["A", "B", "C", "D", "E"] {
        let (held, loaded) = (try await store.similarProducts(sku, limit: 10), try await fresh.similarProducts(sku, limit: 10))
        #expect(held != nil && held == loaded, "similar to \(sku)")
      }
      for customer in customers {
        let (held, loaded) = (try await store.recommend(customer, limit: 10), try await fresh.recommend(customer, limit: 10))
        #expect(!held.isEmpty && held == loaded)
      }
      // What the metrics export: every product and pair of the tables, no more.
      var rows = (products: -1, pairs: -1)
      for try await (products, pairs) in try await store.client.query(
        "SELECT (SELECT count(*)::int FROM analytics.items), (SELECT count(*)::int FROM analytics.item_pairs)",
        logger: testLogger("test")
      ).decode((Int, Int).self) { rows = (products, pairs) }
      #expect(store.recommendations.size == rows && fresh.recommendations.size == rows)
    }
  }
}
