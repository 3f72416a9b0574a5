import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Top products per RFM segment without scoring every customer and reading their orders at each read
/// (docs/ANALYTICS.md, "Top products"):
/// - `analytics.rfm_members`: each customer's segment against the stored edges, and `valid_until`,
///   the time their recency crosses the next edge (when the segment may change with no event);
/// - `analytics.rfm_segment_sales`: the rows of `analytics.product_sales`, per segment; each order says
///   in which segment its lines are counted (`analytics.orders.rfm_segment`);
/// - `analytics.rfm_pending`: customers whose orders changed since they were scored.
/// A change to orders only marks its customers pending (in its transaction: the feeds do no more). A
/// customer is scored again, and their orders' lines move to the segment they are due in, when pending
/// (every second, and before a read), once `valid_until` has passed (likewise), and at every computation
/// of the edges (every customer, in the same transaction). Between these, nothing a segment depends on
/// changes: the kept segments are the ones `rfm(_:edges:now:)` gives at the time of the read. Scores are
/// read from the channel-0 rows of `analytics.customer_scopes` (orders, net and last order per currency,
/// kept exactly).
extension AnalyticsStore {
  /// Writers of the kept segments take turns on this lock (transaction-scoped).
  static let segmentLock = Migrator.lockKey("analytics.rfm_members")

  /// The 25 cells of `segment(recency:frequencyMonetary:)` as SQL arrays: recency score,
  /// frequency-monetary score, segment.
  static let segmentCellsSQL: String = {
    let cells = (1...5).flatMap { r in (1...5).map { fm in (r, fm, segment(recency: r, frequencyMonetary: fm).rawValue) } }
    let array = { (values: [Int]) in "'{\(values.map(String.init).joined(separator: ","))}'::int4[]" }
    return "unnest(\(array(cells.map(\.0))), \(array(cells.map(\.1))), \(array(cells.map(\.2)))) AS cell(r, fm, segment)"
  }()

  /// SQL: the CTEs `c` (per customer `filter` selects in `analytics.customer_scopes`: main currency and
  /// its net, orders in every currency, last order, and recency in whole days at `args.now`) `scores` and `scored`
  /// (their segment and `valid_until`, against the stored edges; none without four cut points). The
  /// statement defines `args(now, ids)` first.
  static func scoredSQL(of filter: String) -> String {
    """
    c AS (
      SELECT customer_id, currency, net, frequency, last_order,
             greatest(0, floor(extract(epoch FROM (SELECT now FROM args) - last_order) / 86400)) AS recency
      FROM (
        SELECT customer_id, currency, net, sum(n) OVER w AS frequency, max(last) OVER w AS last_order,
               row_number() OVER (PARTITION BY customer_id ORDER BY n DESC, net DESC, currency) AS rank
        FROM (
          SELECT customer_id, currency::text AS currency, orders AS n, net_minor AS net, last_at AS last
          FROM analytics.customer_scopes WHERE channel = 0 AND orders > 0 AND (\(filter))) per
        WINDOW w AS (PARTITION BY customer_id)) ranked
      WHERE rank = 1),
    -- Materialized: scored once per customer (joined to the cells first, the planner scored each
    -- customer once per cell tried). A score is 1 + the cut points exceeded, the four compared in turn.
    scores AS MATERIALIZED (
      SELECT c.customer_id, c.last_order,
             6 - (1 + \(exceeded("c.recency", "r.edges"))) AS rs,
             1 + \(exceeded("c.frequency", "f.edges")) AS fs,
             1 + \(exceeded("c.net", "m.edges")) AS ms,
             -- The first recency cut point not exceeded yet: one day past it, the recency score drops.
             CASE WHEN c.recency <= r.edges[1] THEN r.edges[1] WHEN c.recency <= r.edges[2] THEN r.edges[2]
                  WHEN c.recency <= r.edges[3] THEN r.edges[3] WHEN c.recency <= r.edges[4] THEN r.edges[4] END AS next_edge
      FROM c
      JOIN analytics.rfm_edges m ON m.dimension = 'monetary' AND m.currency = c.currency
      JOIN analytics.rfm_edges r ON r.dimension = 'recency'
      JOIN analytics.rfm_edges f ON f.dimension = 'frequency'
      WHERE cardinality(r.edges) = 4 AND cardinality(f.edges) = 4 AND cardinality(m.edges) = 4),
    scored AS (
      SELECT s.customer_id, cell.segment, s.last_order + make_interval(secs => (floor(s.next_edge) + 1) * 86400) AS valid_until
      FROM scores s JOIN \(segmentCellsSQL) ON cell.r = s.rs AND cell.fm = (s.fs + s.ms + 1) / 2)
    """
  }

  /// SQL: how many of the four cut points of `edges` `value` exceeds.
  private static func exceeded(_ value: String, _ edges: String) -> String {
    (1...4).map { "(\(value) > \(edges)[\($0)])::int" }.joined(separator: " + ")
  }

  /// Scores `customers` (every customer when nil) at `now` into `analytics.rfm_members`, and moves the
  /// lines of their orders not counted in the segment they are due in (none when cancelled) in
  /// `analytics.rfm_segment_sales`.
  func scoreSegments(of customers: [UUID]?, now: Date, on connection: PostgresConnection) async throws {
    try await connection.query("SELECT pg_advisory_xact_lock(\(Self.segmentLock)::int8)", logger: logger)
    let filter = customers == nil ? "true" : "customer_id = ANY((SELECT ids FROM args)::uuid[])"
    // Scored and kept first; the customers whose segment changed come back.
    let scoring = try await connection.query(
      """
      WITH args AS (SELECT \(now)::timestamptz AS now, \(customers ?? [])::uuid[] AS ids),
      \(unescaped: Self.scoredSQL(of: filter)),
      old AS (SELECT customer_id, segment::int4 AS segment FROM analytics.rfm_members WHERE \(unescaped: filter)),
      kept AS (
        INSERT INTO analytics.rfm_members (customer_id, segment, valid_until)
        SELECT customer_id, segment, valid_until FROM scored
        ON CONFLICT (customer_id) DO UPDATE SET segment = EXCLUDED.segment, valid_until = EXCLUDED.valid_until
        WHERE (rfm_members.segment, rfm_members.valid_until) IS DISTINCT FROM (EXCLUDED.segment, EXCLUDED.valid_until)),
      dropped AS (
        DELETE FROM analytics.rfm_members WHERE (\(unescaped: filter)) AND customer_id NOT IN (SELECT customer_id FROM scored))
      SELECT customer_id FROM scored s FULL JOIN old o USING (customer_id) WHERE o.segment IS DISTINCT FROM s.segment
      """, logger: logger)
    var moved: [UUID] = []
    for try await id in scoring.decode(UUID.self) { moved.append(id) }
    // The orders to look at: the given customers' (they may have new or cancelled orders), or, for
    // every customer, those whose segment changed (pending customers are scored by their own pass).
    let targets = customers ?? moved
    guard !targets.isEmpty else { return try await keepState(scoredAll: customers == nil, on: connection) }
    // A separate statement, so that the planner sees the members as they are now.
    try await connection.query(
      """
      WITH o AS (
        SELECT o.order_id, o.placed_at, o.currency, o.channel, o.rfm_segment::int4 AS counted, due.segment AS due
        FROM analytics.orders o LEFT JOIN analytics.rfm_members m USING (customer_id)
        CROSS JOIN LATERAL (SELECT CASE WHEN o.cancelled THEN NULL ELSE m.segment::int4 END AS segment) due
        WHERE o.customer_id = ANY(\(targets)::uuid[]) AND o.rfm_segment IS DISTINCT FROM due.segment),
      marked AS (UPDATE analytics.orders t SET rfm_segment = o.due FROM o WHERE t.order_id = o.order_id),
      lines AS (
        SELECT x.segment, x.sign, o.order_id, o.placed_at, o.currency, o.channel, l.sku, l.quantity, l.net_minor
        FROM o CROSS JOIN LATERAL (VALUES (o.counted, -1), (o.due, 1)) AS x(segment, sign)
        JOIN analytics.order_lines l ON l.order_id = o.order_id
        WHERE x.segment IS NOT NULL),
      signed AS (\(unescaped: Self.productSalesSQL(from: "lines", by: ["segment", "sign"])))
      INSERT INTO analytics.rfm_segment_sales (segment, grain, period, currency, channel, sku, quantity, net_minor, orders)
      SELECT segment, grain, period, currency, channel, sku, sum(sign * quantity), sum(sign * net_minor), sum(sign * orders)
      FROM signed GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1, 2, 3, 4, 5, 6
      ON CONFLICT (segment, grain, currency, period, channel, sku) DO UPDATE SET
        quantity = rfm_segment_sales.quantity + EXCLUDED.quantity, net_minor = rfm_segment_sales.net_minor + EXCLUDED.net_minor,
        orders = rfm_segment_sales.orders + EXCLUDED.orders
      """, logger: logger)
    try await keepState(scoredAll: customers == nil, on: connection)
  }

  /// Scores the pending customers and those whose `valid_until` has passed at `now` (one transaction).
  /// The pending rows are read without a lock and deleted at the end only if no feed marked them again
  /// meanwhile (their `version`), so a feed never waits for a scoring pass, and a change committed
  /// during one is scored by the next.
  func scorePendingSegments(now: Date = Date()) async throws {
    try await client.transaction(logger: logger) { connection in
      try await connection.query("SELECT pg_advisory_xact_lock(\(Self.segmentLock)::int8)", logger: logger)
      let due = try await connection.query(
        """
        SELECT customer_id, version FROM analytics.rfm_pending
        UNION ALL SELECT customer_id, -1 FROM analytics.rfm_members WHERE valid_until <= \(now)
        """, logger: logger)
      var customers: Set<UUID> = [], pending: [UUID] = [], versions: [Int64] = []
      for try await (id, version) in due.decode((UUID, Int64).self) {
        customers.insert(id)
        if version >= 0 {
          pending.append(id)
          versions.append(version)
        }
      }
      guard !customers.isEmpty else { return }
      try await scoreSegments(of: Array(customers), now: now, on: connection)
      // Rows a feed holds (it is marking them again) are skipped: they stay pending.
      try await connection.query(
        """
        DELETE FROM analytics.rfm_pending WHERE customer_id IN (
          SELECT p.customer_id FROM analytics.rfm_pending p
          JOIN unnest(\(pending)::uuid[], \(versions)::int8[]) AS c(customer_id, version)
            ON p.customer_id = c.customer_id AND p.version = c.version
          FOR UPDATE OF p SKIP LOCKED)
        """, logger: logger)
    }
  }

  /// After every customer was scored: the kept segments answer for the edges in use.
  private func keepState(scoredAll: Bool, on connection: PostgresConnection) async throws {
    guard scoredAll else { return }
    try await connection.query("DELETE FROM analytics.rfm_segment_state", logger: logger)
    try await connection.query(
      "INSERT INTO analytics.rfm_segment_state (edges_computed_at) SELECT max(computed_at) FROM analytics.rfm_edges HAVING count(*) > 0",
      logger: logger)
  }

  /// Whether the kept segments answer for `now`: every customer was scored against the edges in use
  /// (false until the first computation of the edges after an upgrade). Pending customers, and those
  /// whose segment may have changed since they were scored (`valid_until` passed), are scored first.
  func segmentSalesReady(now: Date = Date()) async throws -> Bool {
    let rows = try await client.query(
      """
      SELECT EXISTS (SELECT 1 FROM analytics.rfm_segment_state s
                     WHERE s.edges_computed_at = (SELECT max(computed_at) FROM analytics.rfm_edges)),
             EXISTS (SELECT 1 FROM analytics.rfm_pending)
             OR EXISTS (SELECT 1 FROM analytics.rfm_members WHERE valid_until <= \(now))
      """, logger: logger)
    var (ready, due) = (false, false)
    for try await (isReady, isDue) in rows.decode((Bool, Bool).self) { (ready, due) = (isReady, isDue) }
    guard ready else { return false }
    if due { try await scorePendingSegments(now: now) }
    return true
  }

  /// Top products of the customers in `segment` at `now`: from the kept segments when they answer,
  /// otherwise by scoring every customer.
  func topProducts(_ range: SalesRange, limit: Int, rfmSegment segment: Rapport_Analytics_V1_RfmSegment, now: Date = Date())
    async throws -> [Rapport_Analytics_V1_ProductSales]
  {
    if try await segmentSalesReady(now: now) {
      return try await topProducts(range, limit: limit, segment: segment.rawValue, now: now)
    }
    return try await topProducts(range, limit: limit, customers: try await customers(in: segment, now: now), now: now)
  }
}
