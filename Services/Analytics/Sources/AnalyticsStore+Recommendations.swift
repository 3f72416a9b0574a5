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

  /// Adds the purchases of the pending orders (at most `limit` of them) in one transaction.
  private func addPendingPurchases(limit: Int?) async throws {
    try await client.transaction(logger: logger) { connection in
      try await addPendingPurchases(limit: limit, on: connection)
    }
  }

  /// Adds the purchases of the pending orders (at most `limit`) in the caller's transaction, after the
  /// passes holding `purchasesLock`. Orders a feed marks meanwhile (not yet committed) stay pending.
  func addPendingPurchases(limit: Int? = nil, on connection: PostgresConnection) async throws {
    try await connection.query("SELECT pg_advisory_xact_lock(\(Self.purchasesLock)::int8)", logger: logger)
    let rows = try await connection.query(
      """
      DELETE FROM analytics.purchases_pending WHERE order_id IN (
        SELECT order_id FROM analytics.purchases_pending LIMIT \(limit ?? Int.max)::int8)
      RETURNING order_id
      """, logger: logger)
    var orders: [UUID] = []
    for try await id in rows.decode(UUID.self) { orders.append(id) }
    try await addPurchases(orders, on: connection)
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
  /// unit counts, and — for each product new to a customer — its pairs with the customer's other products.
  func addPurchases(_ orders: [UUID], on connection: PostgresConnection) async throws {
    guard !orders.isEmpty else { return }
    try await connection.query(
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
          title = EXCLUDED.title),
      pairs AS (
        -- a product new to the customer with each product they had (the table as before this statement)
        SELECT f.sku AS a, e.sku AS b FROM fresh f JOIN analytics.customer_items e ON e.customer_id = f.customer_id
        UNION ALL
        -- two products both new to the customer, once
        SELECT f1.sku, f2.sku FROM fresh f1 JOIN fresh f2 ON f2.customer_id = f1.customer_id AND f1.sku < f2.sku)
      INSERT INTO analytics.item_pairs (a, b, customers)
      SELECT a, b, count(*) FROM (SELECT a, b FROM pairs UNION ALL SELECT b, a FROM pairs) both_ways GROUP BY a, b
      ON CONFLICT (a, b) DO UPDATE SET customers = item_pairs.customers + EXCLUDED.customers
      """, logger: logger)
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

  /// Up to `limit` products for `customer`: by affinity-weighted Jaccard similarity to what they bought,
  /// then top sellers; none they bought.
  func recommend(_ customer: UUID, limit: Int) async throws -> [Rapport_Analytics_V1_RecommendedProduct] {
    try await addingPendingPurchases()
    let rows = try await client.prepared(RecommendText.self, Self.recommendQuery(customer, limit: limit), logger: logger)
    var products: [Rapport_Analytics_V1_RecommendedProduct] = []
    for try await (sku, title, score, similar, _) in rows.decode((String, String, Double, Bool, Int64).self) {
      products.append(Self.recommended(sku, title, score, similar))
    }
    return products
  }

  static func recommended(_ sku: String, _ title: String, _ score: Double, _ similar: Bool) -> Rapport_Analytics_V1_RecommendedProduct {
    .with {
      $0.sku = sku
      $0.title = title
      $0.score = score
      $0.reason = similar ? .similar : .topSeller
    }
  }

  /// The ranking cut at `limit` (at most `Self.mostRecommended`): the same first `limit` as a ranking
  /// of `limit`, since similar products come first and top sellers only fill up after them.
  static func recommendQuery(_ customer: UUID, limit: Int) -> PostgresQuery {
    """
    SELECT r.* FROM (SELECT \(customer)::uuid AS id) k
    CROSS JOIN LATERAL (\(unescaped: recommendSelect(customer: "k.id", limit: String(mostRecommended)))) r
    WHERE r.rank <= \(limit)::int8 ORDER BY r.rank
    """
  }

  /// The largest `limit` of `Recommend`.
  static let mostRecommended = 100

  /// The ranking as rows of (sku, title, score, by similarity, rank) for the customer whose id is the SQL
  /// expression `customer`, at most `limit` (an SQL expression) of them.
  static func recommendSelect(customer: String, limit: String) -> String {
    """
    WITH mine AS (SELECT sku, affinity FROM analytics.customer_items WHERE customer_id = \(customer)),
    total AS (SELECT sum(affinity) AS affinity FROM mine),
    alike AS (
      SELECT p.b AS sku,
             sum(m.affinity * p.customers::float8 / (ia.customers + ib.customers - p.customers)) / (SELECT affinity FROM total)
               AS score
      FROM mine m JOIN analytics.item_pairs p ON p.a = m.sku
      JOIN analytics.items ia ON ia.sku = p.a JOIN analytics.items ib ON ib.sku = p.b
      WHERE p.b NOT IN (SELECT sku FROM mine) GROUP BY p.b
      ORDER BY score DESC, sku LIMIT \(limit)),
    sellers AS (
      SELECT sku, 0::float8 AS score FROM analytics.items
      WHERE sku NOT IN (SELECT sku FROM mine) AND sku NOT IN (SELECT sku FROM alike)
      ORDER BY customers DESC, units DESC, sku LIMIT \(limit))
    SELECT r.sku, i.title, r.score, r.by_similarity,
      row_number() OVER (ORDER BY r.part, r.score DESC, i.customers DESC, i.units DESC, r.sku) AS rank
    FROM (
      SELECT sku, score, true AS by_similarity, 0 AS part FROM alike
      UNION ALL SELECT sku, score, false, 1 FROM sellers) r
    JOIN analytics.items i USING (sku)
    ORDER BY rank LIMIT \(limit)
    """
  }

  enum RecommendText: StatementText { static let sql = AnalyticsStore.recommendQuery(UUID(), limit: 0).sql }


  /// Up to `limit` products by Jaccard similarity to `sku`; nil when nobody bought `sku`.
  func similarProducts(_ sku: String, limit: Int) async throws -> [Rapport_Analytics_V1_SimilarProduct]? {
    try await addingPendingPurchases()
    let known = try await client.query("SELECT 1 FROM analytics.items WHERE sku = \(sku)", logger: logger)
    var found = false
    for try await _ in known.decode(Int.self) { found = true }
    guard found else { return nil }
    let rows = try await client.query(
      """
      SELECT p.b, ib.title, p.customers::float8 / (ia.customers + ib.customers - p.customers), p.customers
      FROM analytics.item_pairs p JOIN analytics.items ia ON ia.sku = p.a JOIN analytics.items ib ON ib.sku = p.b
      WHERE p.a = \(sku) ORDER BY 3 DESC, 1 LIMIT \(limit)
      """, logger: logger)
    var products: [Rapport_Analytics_V1_SimilarProduct] = []
    for try await (other, title, similarity, common) in rows.decode((String, String, Double, Int64).self) {
      products.append(.with {
        $0.sku = other
        $0.title = title
        $0.similarity = similarity
        $0.commonCustomers = common
      })
    }
    return products
  }
}
