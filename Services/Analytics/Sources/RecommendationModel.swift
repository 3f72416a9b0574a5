import Foundation
import RapportProtos
import Synchronization

/// The products and their co-purchase counts (`analytics.items`, `analytics.item_pairs`) as of one
/// `analytics.recommendation_version`, in memory, so that ranking is arithmetic instead of a join of
/// every product a customer bought with every product it pairs with (about 3,000 pair rows per customer
/// on the seeded shop: 340–590 ms for a batch of 100 in SQL). Memory grows with the pairs counted.
struct RecommendationModel: Sendable {
  struct Item: Sendable {
    var sku: String
    var title: String
    var customers: Int64
    var units: Int64
  }

  /// The version of the tables this model holds.
  var version: Int64
  private(set) var items: [Item] = []
  private var positions: [String: Int] = [:]
  /// Per product (by position): customers who bought it and each other product, by the other's position.
  private var pairs: [[Int: Int64]] = []
  /// Positions by customers, then units (descending), then SKU: top sellers first.
  private var sellers: [Int] = []
  /// The pairs held (rows of `analytics.item_pairs`).
  private(set) var pairCount = 0

  init(version: Int64) { self.version = version }

  /// Sets a product's counts (a row of `analytics.items`); `apply` orders the top sellers after the last.
  private mutating func set(_ item: Item) {
    if let at = positions[item.sku] {
      items[at] = item
    } else {
      positions[item.sku] = items.count
      items.append(item)
      pairs.append([:])
    }
  }

  /// Sets how many customers bought both `a` and `b` (a row of `analytics.item_pairs`; both products set).
  private mutating func set(pair a: String, _ b: String, customers: Int64) {
    guard let x = positions[a], let y = positions[b] else { return }
    if pairs[x].updateValue(customers, forKey: y) == nil { pairCount += 1 }
  }

  /// Sets the products, then the pairs, of `changes`, and orders the top sellers.
  mutating func apply(_ changes: RecommendationChanges) {
    for item in changes.items { set(item) }
    for pair in changes.pairs { set(pair: pair.a, pair.b, customers: pair.customers) }
    ordered()
    version = changes.version
  }

  /// Orders the top sellers after products were set.
  private mutating func ordered() {
    sellers = items.indices.sorted { Self.sellsBetter(items[$0], items[$1]) }
  }

  private static func sellsBetter(_ x: Item, _ y: Item) -> Bool {
    (x.customers, x.units, y.sku) > (y.customers, y.units, x.sku)
  }

  /// Jaccard similarity of two products: customers of both over customers of either.
  private func jaccard(_ x: Int, _ y: Int, _ both: Int64) -> Double {
    Double(both) / Double(items[x].customers + items[y].customers - both)
  }

  /// Up to `limit` products by Jaccard similarity to `sku` (then by SKU); nil when nobody bought `sku`.
  func similar(to sku: String, limit: Int) -> [Rapport_Analytics_V1_SimilarProduct]? {
    guard let x = positions[sku] else { return nil }
    let ranked = pairs[x].map { (y: $0.key, both: $0.value, similarity: jaccard(x, $0.key, $0.value)) }
      .sorted { ($0.similarity, items[$1.y].sku) > ($1.similarity, items[$0.y].sku) }
    return ranked.prefix(limit).map { other in
      .with {
        $0.sku = items[other.y].sku
        $0.title = items[other.y].title
        $0.similarity = other.similarity
        $0.commonCustomers = other.both
      }
    }
  }

  /// Up to `limit` products for a customer who bought `mine` (SKU and affinity): by affinity-weighted
  /// Jaccard similarity to what they bought (over their total affinity), then top sellers; none they
  /// bought. The first `limit` by score (then SKU) are ranked by score, customers, units and SKU.
  func recommend(_ mine: [(sku: String, affinity: Double)], limit: Int) -> [Rapport_Analytics_V1_RecommendedProduct] {
    guard limit > 0 else { return [] }
    let bought = Set(mine.compactMap { positions[$0.sku] })
    let total = mine.reduce(0) { $0 + $1.affinity }
    var scores: [Int: Double] = [:]
    for (sku, affinity) in mine {
      guard let x = positions[sku] else { continue }
      for (y, both) in pairs[x] where !bought.contains(y) {
        scores[y, default: 0] += affinity * Double(both) / Double(items[x].customers + items[y].customers - both)
      }
    }
    let alike = scores.map { (y: $0.key, score: $0.value / total) }
      .sorted { ($0.score, items[$1.y].sku) > ($1.score, items[$0.y].sku) }
      .prefix(limit)
      .sorted { ($0.score, items[$0.y].customers, items[$0.y].units, items[$1.y].sku) > ($1.score, items[$1.y].customers, items[$1.y].units, items[$0.y].sku) }
    var ranked = alike.map { RecommendationModel.recommended(items[$0.y], score: $0.score, similar: true) }
    for y in sellers where ranked.count < limit && !bought.contains(y) && scores[y] == nil {
      ranked.append(Self.recommended(items[y], score: 0, similar: false))
    }
    return ranked
  }

  private static func recommended(_ item: Item, score: Double, similar: Bool) -> Rapport_Analytics_V1_RecommendedProduct {
    .with {
      $0.sku = item.sku
      $0.title = item.title
      $0.score = score
      $0.reason = similar ? .similar : .topSeller
    }
  }
}

/// What a pass adding purchases changed, at the version its transaction set.
struct RecommendationChanges: Sendable {
  var version: Int64
  var items: [RecommendationModel.Item] = []
  var pairs: [(a: String, b: String, customers: Int64)] = []
}

/// The process's `RecommendationModel`, shared by its stores. A pass of this process applies its changes
/// after its commit when the model holds the version before it; any other change of the tables (another
/// replica's pass, a merge's) leaves the model behind the tables' version, and the next read loads them.
final class RecommendationCache: Sendable {
  private let model = Mutex<RecommendationModel?>(nil)

  /// The version of the model held; nil before the first read or after a change it did not follow.
  var version: Int64? { model.withLock { $0?.version } }

  /// The products and pairs held (none when no model is).
  var size: (products: Int, pairs: Int) { model.withLock { ($0?.items.count ?? 0, $0?.pairCount ?? 0) } }

  /// The model at `version` or newer: the one held, or `load()`'s.
  func model(atLeast version: Int64, _ load: () async throws -> RecommendationModel) async throws -> RecommendationModel {
    if let held = model.withLock({ $0 }), held.version >= version { return held }
    let loaded = try await load()
    return model.withLock { held in
      if let newer = held, newer.version >= loaded.version { return newer }
      held = loaded
      return loaded
    }
  }

  /// Applies a committed pass's changes, or forgets a model they do not follow from.
  func apply(_ changes: RecommendationChanges) {
    model.withLock { held in
      guard var current = held, current.version < changes.version else { return }
      guard current.version == changes.version - 1 else {
        held = nil
        return
      }
      held = nil  // no copy while it changes
      current.apply(changes)
      held = current
    }
  }
}
