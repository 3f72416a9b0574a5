import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Item-to-item recommendations after Microsoft's SAR (docs/ANALYTICS.md, "Recommendations"):
/// co-occurrence counted per customer (two products co-occur once for each customer who bought both),
/// Jaccard similarity, and a customer's affinity to a product that halves every 30 days. Everything is
/// updated incrementally; nothing is retrained. The order feed only marks the orders it stores pending
/// (`analytics.purchases_pending`, in its transaction); their lines are added by a pass every 250 ms, and
/// before every read of these tables and every merge, so that reads answer for every order applied.
extension AnalyticsStore {
  /// Passes adding purchases (and merges moving affinities) take turns on this lock (transaction-scoped).
  static let purchasesLock = Migrator.lockKey("analytics.customer_items")

  /// Adds the purchases of the pending orders (at most `limit` of them) in one transaction, then the
  /// changes to the process's model.
  private func addPendingPurchases(limit: Int?) async throws {
    let changes = try await client.transaction(logger: logger) { connection in
      try await addPendingPurchases(limit: limit, on: connection)
    }
    if let changes { recommendations.apply(changes) }
  }

  /// Adds the purchases of the pending orders (at most `limit`) in the caller's transaction, after the
  /// passes holding `purchasesLock`. Orders a feed marks meanwhile (not yet committed) stay pending.
  /// Returns what changed (nil when nothing was pending), for the process's model once committed.
  @discardableResult
  func addPendingPurchases(limit: Int? = nil, on connection: PostgresConnection) async throws -> RecommendationChanges? {
    try await connection.query("SELECT pg_advisory_xact_lock(\(Self.purchasesLock)::int8)", logger: logger)
    let rows = try await connection.query(
      """
      DELETE FROM analytics.purchases_pending WHERE order_id IN (
        SELECT order_id FROM analytics.purchases_pending LIMIT \(limit ?? Int.max)::int8)
      RETURNING order_id
      """, logger: logger)
    var orders: [UUID] = []
    for try await id in rows.decode(UUID.self) { orders.append(id) }
    return try await addPurchases(orders, on: connection)
  }

  /// Adds the pending purchases (at most `limit`) if there are any: before a read of the recommendation
  /// tables (every one of them), and every 250 ms.
  func addingPendingPurchases(limit: Int? = nil) async throws {
    let rows = try await client.query("SELECT EXISTS (SELECT 1 FROM analytics.purchases_pending)", logger: logger)
    var pending = false
    for try await any in rows.decode(Bool.self) { pending = any }
    if pending { try await addPendingPurchases(limit: limit) }
  }

  /// Affinity half-life.
  static let halfLifeDays = 30.0

  /// SQL for one purchase's affinity weight at `placedAt`: 2^((t − 2020-01-01) / half-life). Weights are
  /// stored relative to that fixed epoch, so adding a purchase is one addition; a customer's weights
  /// share the factor 2^(−(now − epoch) / half-life), which ranking divides out.
  static func affinitySQL(_ placedAt: String) -> String {
    "power(2.0::float8, extract(epoch FROM \(placedAt) - timestamptz '2020-01-01 00:00:00+00') / \(halfLifeDays * 86_400))"
  }

  /// Adds the lines of `orders` (just stored) to the customers' affinities, the products' customer and
  /// unit counts, and — for each product new to a customer — its pairs with the customer's other products;
  /// bumps the tables' version. Returns the products and pairs changed, with their new counts.
  func addPurchases(_ orders: [UUID], on connection: PostgresConnection) async throws -> RecommendationChanges? {
    guard !orders.isEmpty else { return nil }
    let rows = try await connection.query(
      """
      WITH l AS (
        SELECT o.customer_id, l.sku, (array_agg(l.title ORDER BY o.placed_at DESC))[1] AS title,
               sum(l.quantity) AS units, sum(\(unescaped: Self.affinitySQL("o.placed_at"))) AS affinity
        FROM analytics.order_lines l JOIN analytics.orders o USING (order_id)
        WHERE o.order_id = ANY(\(orders)::uuid[]) GROUP BY o.customer_id, l.sku),
      ci AS (
        INSERT INTO analytics.customer_items (customer_id, sku, affinity)
        SELECT customer_id, sku, affinity FROM l
        ON CONFLICT (customer_id, sku) DO UPDATE SET affinity = customer_items.affinity + EXCLUDED.affinity
        RETURNING customer_id, sku, (xmax = 0) AS inserted),
      fresh AS (SELECT customer_id, sku FROM ci WHERE inserted),
      items AS (
        INSERT INTO analytics.items (sku, title, customers, units)
        SELECT l.sku, (array_agg(l.title))[1], count(f.sku), sum(l.units)
        FROM l LEFT JOIN fresh f USING (customer_id, sku) GROUP BY l.sku
        ON CONFLICT (sku) DO UPDATE SET
          customers = items.customers + EXCLUDED.customers, units = items.units + EXCLUDED.units,
          title = EXCLUDED.title
        RETURNING sku, title, customers, units),
      pairs AS (
        -- a product new to the customer with each product they had (the table as before this statement)
        SELECT f.sku AS a, e.sku AS b FROM fresh f JOIN analytics.customer_items e ON e.customer_id = f.customer_id
        UNION ALL
        -- two products both new to the customer, once
        SELECT f1.sku, f2.sku FROM fresh f1 JOIN fresh f2 ON f2.customer_id = f1.customer_id AND f1.sku < f2.sku),
      counted AS (
        INSERT INTO analytics.item_pairs (a, b, customers)
        SELECT a, b, count(*) FROM (SELECT a, b FROM pairs UNION ALL SELECT b, a FROM pairs) both_ways GROUP BY a, b
        ON CONFLICT (a, b) DO UPDATE SET customers = item_pairs.customers + EXCLUDED.customers
        RETURNING a, b, customers),
      version AS (UPDATE analytics.recommendation_version SET version = version + 1 RETURNING version)
      SELECT v.version, c.* FROM version v LEFT JOIN (
        SELECT sku, title, customers, units, NULL::text AS b FROM items
        UNION ALL SELECT a, NULL, customers, NULL, b FROM counted) c ON true
      """, logger: logger)
    return try await Self.changes(Rows(rows.collect()))
  }

  /// Rows of (version, sku, title, customers, units, NULL) for products and (version, a, NULL, customers,
  /// NULL, b) for pairs, as the products and pairs at that version; nil without a row.
  private static func changes(_ rows: Rows) async throws -> RecommendationChanges? {
    var changes: RecommendationChanges?
    for try await (version, sku, title, customers, units, b) in rows.decode((Int64, String?, String?, Int64?, Int64?, String?).self) {
      if changes == nil { changes = RecommendationChanges(version: version) }
      guard let sku, let customers else { continue }
      if let b {
        changes?.pairs.append((sku, b, customers))
      } else if let title, let units {
        changes?.items.append(.init(sku: sku, title: title, customers: customers, units: units))
      }
    }
    return changes
  }

  /// The products, their pairs and the tables' version, in one statement (one snapshot).
  func loadRecommendationModel() async throws -> RecommendationModel {
    let rows = try await client.query(
      """
      SELECT v.version, c.* FROM analytics.recommendation_version v LEFT JOIN (
        SELECT sku, title, customers, units, NULL::text AS b FROM analytics.items
        UNION ALL SELECT a, NULL, customers, NULL, b FROM analytics.item_pairs) c ON true
      """, logger: logger)
    guard let all = try await Self.changes(rows) else { throw RPCFailure.internal("the recommendation version is missing") }
    var model = RecommendationModel(version: all.version)
    model.apply(all)
    return model
  }

  /// The process's model at `version` or newer.
  func recommendationModel(atLeast version: Int64) async throws -> RecommendationModel {
    try await recommendations.model(atLeast: version) { try await loadRecommendationModel() }
  }

  /// Moves a merged customer's affinities to the survivor (product and pair counts stay as counted).
  func mergeAffinities(survivor: UUID, duplicate: UUID, on connection: PostgresConnection) async throws {
    try await connection.query(
      """
      WITH moved AS (DELETE FROM analytics.customer_items WHERE customer_id = \(duplicate) RETURNING sku, affinity)
      INSERT INTO analytics.customer_items (customer_id, sku, affinity)
      SELECT \(survivor), sku, affinity FROM moved
      ON CONFLICT (customer_id, sku) DO UPDATE SET affinity = customer_items.affinity + EXCLUDED.affinity
      """, logger: logger)
  }

  /// The largest `limit` of `Recommend`.
  static let mostRecommended = 100

  /// Up to `limit` products for `customer`: by affinity-weighted Jaccard similarity to what they bought,
  /// then top sellers; none they bought (`RecommendationModel.recommend`).
  func recommend(_ customer: UUID, limit: Int) async throws -> [Rapport_Analytics_V1_RecommendedProduct] {
    try await addingPendingPurchases()
    let rows = try await client.query(
      """
      SELECT (SELECT version FROM analytics.recommendation_version), sku, affinity
      FROM (SELECT 1) one LEFT JOIN analytics.customer_items ON customer_id = \(customer)
      """, logger: logger)
    var version: Int64 = 0
    var mine: [(sku: String, affinity: Double)] = []
    for try await (at, sku, affinity) in rows.decode((Int64, String?, Double?).self) {
      version = at
      if let sku, let affinity { mine.append((sku, affinity)) }
    }
    return try await recommendationModel(atLeast: version).recommend(mine, limit: limit)
  }

  /// Up to `limit` products by Jaccard similarity to `sku`; nil when nobody bought `sku`.
  func similarProducts(_ sku: String, limit: Int) async throws -> [Rapport_Analytics_V1_SimilarProduct]? {
    try await addingPendingPurchases()
    let rows = try await client.query("SELECT version FROM analytics.recommendation_version", logger: logger)
    var version: Int64 = 0
    for try await at in rows.decode(Int64.self) { version = at }
    return try await recommendationModel(atLeast: version).similar(to: sku, limit: limit)
  }
}
