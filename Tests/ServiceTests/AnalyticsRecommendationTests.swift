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
    }
  }
}
