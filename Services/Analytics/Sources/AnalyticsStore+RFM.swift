import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Net spend and RFM (docs/ANALYTICS.md): per-customer values are read from `analytics.orders` when
/// asked, so they move with every applied event; the quintile edges they are scored against are
/// recomputed on a schedule (`computeRfmEdges`) and stored with their time.
extension AnalyticsStore {
  /// A customer's orders in one currency.
  struct Spend: Sendable, Equatable {
    let currency: String
    /// Orders not cancelled.
    let orders: Int64
    let cancelled: Int64
    /// Totals of orders not cancelled, less what was refunded on them.
    let net: Int64
    /// Refunded on all orders, cancelled ones included.
    let refunded: Int64
    /// The last and first orders not cancelled.
    let last: Date?
    var first: Date? = nil
  }

  /// The customer's spend per currency, sorted by currency code.
  func spending(_ customer: UUID) async throws -> [Spend] { try await spending(of: [customer])[customer] ?? [] }

  /// Each customer's spend per currency, sorted by currency code (customers without orders absent).
  func spending(of customers: [UUID]) async throws -> [UUID: [Spend]] {
    let rows = try await client.prepared(SpendingText.self, Self.spendingQuery(customers), logger: logger)
    var spend: [UUID: [Spend]] = [:]
    for try await (customer, currency, orders, cancelled, net, refunded, last, first) in rows.decode(
      (UUID, String, Int64, Int64, Int64, Int64, Date?, Date?).self)
    {
      spend[customer, default: []].append(
        Spend(currency: currency, orders: orders, cancelled: cancelled, net: net, refunded: refunded, last: last, first: first))
    }
    return spend
  }

  static func spendingQuery(_ customers: [UUID]) -> PostgresQuery {
    """
    SELECT customer_id, currency::text, \(unescaped: spendColumns)
    FROM analytics.orders WHERE customer_id = ANY(\(customers)::uuid[])
    GROUP BY customer_id, currency ORDER BY customer_id, currency
    """
  }

  /// A customer's orders in one currency, aggregated in `Spend`'s order (after its currency).
  static let spendColumns = """
    count(*) FILTER (WHERE NOT cancelled), count(*) FILTER (WHERE cancelled),
    coalesce(sum(total_minor - refunded_minor) FILTER (WHERE NOT cancelled), 0)::int8,
    sum(refunded_minor)::int8, max(placed_at) FILTER (WHERE NOT cancelled), min(placed_at) FILTER (WHERE NOT cancelled)
    """

  enum SpendingText: StatementText { static let sql = AnalyticsStore.spendingQuery([]).sql }


  /// `a / b` rounded to the nearest integer, halves away from zero.
  static func roundedDivision(_ a: Int64, _ b: Int64) -> Int64 {
    let quotient = a / b, remainder = a % b
    return 2 * abs(remainder) >= b ? quotient + (a < 0 ? -1 : 1) : quotient
  }

  /// The customer's main currency: the most orders not cancelled, then the higher net, then the first code.
  static func mainCurrency(_ spend: [Spend]) -> Spend? {
    spend.filter { $0.orders > 0 }.min {
      ($0.orders, $0.net) != ($1.orders, $1.net) ? ($0.orders, $0.net) > ($1.orders, $1.net) : $0.currency < $1.currency
    }
  }

  /// The quintile edges in use.
  struct RfmEdges: Sendable {
    var recency: [Double] = [], frequency: [Double] = []
    var monetary: [String: [Double]] = [:], monetaryPopulation: [String: Int64] = [:]
    var population: Int64 = 0
    var computedAt: Date?
  }

  func rfmEdges() async throws -> RfmEdges {
    let rows = try await client.query(
      "SELECT dimension, currency, edges, population, computed_at FROM analytics.rfm_edges", logger: logger)
    var edges = RfmEdges()
    for try await (dimension, currency, cuts, population, computed) in rows.decode(
      (String, String, [Double], Int64, Date).self)
    {
      edges.computedAt = computed
      switch dimension {
      case "recency":
        edges.recency = cuts
        edges.population = population
      case "frequency": edges.frequency = cuts
      default:
        edges.monetary[currency] = cuts
        edges.monetaryPopulation[currency] = population
      }
    }
    return edges
  }

  /// The customer's RFM against the stored edges; nil without an order that was not cancelled, or
  /// before edges exist for the customer's main currency.
  func rfm(_ spend: [Spend], now: Date = Date()) async throws -> Rapport_Analytics_V1_Rfm? {
    guard Self.mainCurrency(spend) != nil else { return nil }
    return Self.rfm(spend, edges: try await scheduled.edges { try await rfmEdges() }, now: now)
  }

  /// `rfm(_:now:)` against `edges`.
  static func rfm(_ spend: [Spend], edges: RfmEdges, now: Date) -> Rapport_Analytics_V1_Rfm? {
    guard let main = mainCurrency(spend), let last = spend.compactMap(\.last).max() else { return nil }
    guard let computed = edges.computedAt, edges.recency.count == 4, edges.frequency.count == 4,
      let monetaryEdges = edges.monetary[main.currency], monetaryEdges.count == 4
    else { return nil }
    var rfm = Rapport_Analytics_V1_Rfm()
    rfm.recencyDays = Self.wholeDays(from: last, to: now)
    rfm.frequency = spend.reduce(0) { $0 + $1.orders }
    rfm.monetary = .money(main.net, main.currency)
    rfm.recencyScore = Int32(6 - Self.quintile(Double(rfm.recencyDays), edges.recency))
    rfm.frequencyScore = Int32(Self.quintile(Double(rfm.frequency), edges.frequency))
    rfm.monetaryScore = Int32(Self.quintile(Double(main.net), monetaryEdges))
    rfm.segment = Self.segment(
      recency: Int(rfm.recencyScore), frequencyMonetary: Self.meanScore(Int(rfm.frequencyScore), Int(rfm.monetaryScore)))
    rfm.edgesComputedAt = .init(microsecondsOf: computed)
    return rfm
  }

  /// 1 + how many of the four ascending cut points `value` exceeds: 1 (lowest fifth) … 5 (highest).
  static func quintile(_ value: Double, _ edges: [Double]) -> Int { 1 + edges.filter { value > $0 }.count }

  /// The mean of two scores, halves rounded up.
  static func meanScore(_ a: Int, _ b: Int) -> Int { (a + b + 1) / 2 }

  static func wholeDays(from start: Date, to end: Date) -> Int64 { max(0, Int64((end.timeIntervalSince(start) / 86_400).rounded(.down))) }

  /// The segment of a cell: recency score × rounded mean of frequency and monetary scores
  /// (the table in docs/ANALYTICS.md; every one of the 25 cells has exactly one segment).
  static func segment(recency r: Int, frequencyMonetary fm: Int) -> Rapport_Analytics_V1_RfmSegment {
    switch (r, fm) {
    case (5, 4...5): .champions
    case (3...4, 4...5): .loyal
    case (4...5, 2...3): .potentialLoyalist
    case (5, 1): .new
    case (4, 1): .promising
    case (3, 1...3): .needsAttention
    case (1...2, 5): .cantLoseThem
    case (1...2, 3...4): .atRisk
    case (2, 1...2): .hibernating
    default: .lost  // (1, 1...2)
    }
  }

  /// The customers whose RFM segment (as `rfm` scores them one at a time) is `segment` at `now`, scored
  /// in one statement (`scoredSQL`): the same values (recency from the last order, orders, main-currency
  /// net), the same quintile rule (1 + cut points exceeded) and the 25 cells of
  /// `segment(recency:frequencyMonetary:)`.
  func customers(in segment: Rapport_Analytics_V1_RfmSegment, now: Date = Date()) async throws -> [UUID] {
    let rows = try await client.query(
      """
      WITH args AS (SELECT \(now)::timestamptz AS now), \(unescaped: Self.scoredSQL(of: "true"))
      SELECT customer_id FROM scored WHERE segment = \(segment.rawValue) ORDER BY 1
      """, logger: logger)
    var customers: [UUID] = []
    for try await id in rows.decode(UUID.self) { customers.append(id) }
    return customers
  }

  /// Recomputes the quintile edges over the active population as of `now`, from the kept
  /// `analytics.customer_scopes`, and scores every customer's segment against them (one transaction;
  /// replicas take turns on an advisory lock).
  func computeRfmEdges(now: Date = Date()) async throws {
    defer { scheduled.clear() }
    try await client.transaction(logger: logger) { connection in
      try await connection.query(
        "SELECT pg_advisory_xact_lock(\(Migrator.lockKey("analytics.rfm_edges"))::int8)", logger: logger)
      try await connection.query("DELETE FROM analytics.rfm_edges", logger: logger)
      try await connection.query(
        """
        WITH per AS (
          SELECT customer_id, currency, orders AS n, net_minor AS net, last_at AS last
          FROM analytics.customer_scopes WHERE channel = 0 AND orders > 0),
        c AS (
          SELECT customer_id, sum(n) AS frequency,
                 floor(extract(epoch FROM \(now)::timestamptz - max(last)) / 86400) AS recency
          FROM per GROUP BY customer_id),
        main AS (
          SELECT DISTINCT ON (customer_id) customer_id, currency, net FROM per
          ORDER BY customer_id, n DESC, net DESC, currency),
        cuts AS (
          SELECT 'recency' AS dimension, '' AS currency,
                 percentile_cont(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY recency) AS edges,
                 count(*) AS population FROM c
          UNION ALL
          SELECT 'frequency', '', percentile_cont(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY frequency),
                 count(*) FROM c
          UNION ALL
          SELECT 'monetary', currency::text, percentile_cont(ARRAY[0.2, 0.4, 0.6, 0.8]) WITHIN GROUP (ORDER BY net),
                 count(*) FROM main GROUP BY currency)
        INSERT INTO analytics.rfm_edges (dimension, currency, edges, population, computed_at)
        SELECT dimension, currency, edges, population, \(now) FROM cuts WHERE population > 0
        """, logger: logger)
      try await scoreSegments(of: nil, now: now, on: connection)
    }
  }
}

extension Rapport_Common_V1_Money {
  static func money(_ minor: Int64, _ currency: String) -> Self {
    .with {
      $0.amountMinor = minor
      $0.currency = currency
    }
  }
}
