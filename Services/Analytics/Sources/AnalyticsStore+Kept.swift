import Foundation
import PostgresNIO
import RapportCore

/// Aggregates kept exactly by the transactions that change orders (docs/ANALYTICS.md, "Sales"), so that
/// sales and cohort reads in UTC do not grow with the history:
/// - `analytics.cohort_cells`: customers per (first-order month, month of activity);
/// - `analytics.sales_periods`: orders, net revenue, customers and new customers per (day, week or
///   month, currency, channel or 0 for all);
/// - `analytics.customer_scopes`: each customer's first order not cancelled and last order per
///   (currency, channel or 0).
/// Every change to orders (placements, imports of history, cancellations, refunds, merges) runs inside
/// `keepingAggregates(of:on:_:)`, which reads what the customers it touches contribute before and after
/// and adds the difference, in the change's transaction.
extension AnalyticsStore {
  /// The orders not cancelled of the customers `filter` selects (a condition on `customer_id`), with
  /// each customer's first such order in any currency or channel.
  private static func keptOrdersSQL(where filter: String) -> String {
    """
    o AS (
      SELECT customer_id, placed_at, currency::text AS currency, channel, total_minor - refunded_minor AS net,
             min(placed_at) OVER (PARTITION BY customer_id) AS first_at
      FROM analytics.orders WHERE NOT cancelled AND (\(filter)))
    """
  }

  /// SQL: (cohort, month, customers) of the customers `filter` selects, months in UTC.
  static func cohortCellsSQL(where filter: String) -> String {
    """
    WITH \(keptOrdersSQL(where: filter))
    SELECT cohort, month, count(*)::int8 AS customers FROM (
      SELECT DISTINCT customer_id, date_trunc('month', placed_at, 'UTC') AS month,
             date_trunc('month', first_at, 'UTC') AS cohort FROM o) x
    GROUP BY cohort, month
    """
  }

  /// SQL: (unit, period, currency, channel, orders, net_minor, active, new) of the customers `filter`
  /// selects, periods in UTC; channel 0 counts every channel.
  static func salesPeriodsSQL(where filter: String) -> String {
    """
    WITH \(keptOrdersSQL(where: filter)),
    g AS (
      SELECT u.unit, date_trunc(u.unit, o.placed_at, 'UTC') AS period, o.currency, c.channel, o.customer_id,
             min(o.first_at) AS first_at, count(*) AS n, sum(o.net) AS net
      FROM o CROSS JOIN (VALUES ('day'), ('week'), ('month')) AS u(unit)
      CROSS JOIN LATERAL (SELECT o.channel UNION SELECT 0) AS c(channel)
      GROUP BY 1, 2, 3, 4, 5)
    SELECT unit, period, currency, channel, sum(n)::int8, sum(net)::int8, count(*)::int8,
           count(*) FILTER (WHERE date_trunc(unit, first_at, 'UTC') = period)::int8
    FROM g GROUP BY 1, 2, 3, 4
    """
  }

  /// SQL: (customer_id, currency, channel, first_kept_at, last_at) of the customers `filter` selects.
  static func customerScopesSQL(where filter: String) -> String {
    """
    WITH \(keptOrdersSQL(where: filter))
    SELECT o.customer_id, o.currency, c.channel, min(o.first_at), max(o.placed_at)
    FROM o CROSS JOIN LATERAL (SELECT o.channel UNION SELECT 0) AS c(channel)
    GROUP BY 1, 2, 3
    """
  }

  /// Runs `change`, which may change the orders not cancelled of `customers` (or of the survivors they
  /// were merged into), and moves the kept aggregates by what it changed.
  func keepingAggregates(
    of customers: [UUID], on connection: PostgresConnection, _ change: () async throws -> Void
  ) async throws {
    guard !customers.isEmpty else { return try await change() }
    // The customers and the survivors of those merged away (an order for a merged id is the survivor's),
    // so that the filter is one index lookup per customer.
    let survivors = try await connection.query(
      "SELECT survivor_id FROM analytics.customer_aliases WHERE duplicate_id = ANY(\(customers)::uuid[])", logger: logger)
    var touched = Set(customers)
    for try await survivor in survivors.decode(UUID.self) { touched.insert(survivor) }
    let filter = "customer_id = ANY($1::uuid[])"
    var binds = PostgresBindings()
    binds.append(touched.sorted { $0.uuidString < $1.uuidString })
    func read(_ sql: String, values: Int) async throws -> [KeptKey: [Int64]] {
      var read: [KeptKey: [Int64]] = [:]
      for try await row in try await connection.query(PostgresQuery(unsafeSQL: sql, binds: binds), logger: logger) {
        let key: KeptKey
        let numbers: [Int64]
        if values == 1 {
          let (cohort, month, count) = try row.decode((Date, Date, Int64).self)
          key = KeptKey(unit: "month", period: month, currency: "", channel: 0, cohort: cohort)
          numbers = [count]
        } else {
          let (unit, period, currency, channel, orders, net, active, new) = try row.decode(
            (String, Date, String, Int, Int64, Int64, Int64, Int64).self)
          key = KeptKey(unit: unit, period: period, currency: currency, channel: channel, cohort: nil)
          numbers = [orders, net, active, new]
        }
        read[key] = numbers
      }
      return read
    }
    let cohortsBefore = try await read(Self.cohortCellsSQL(where: filter), values: 1)
    let salesBefore = try await read(Self.salesPeriodsSQL(where: filter), values: 4)
    try await change()
    let cohorts = Self.difference(cohortsBefore, try await read(Self.cohortCellsSQL(where: filter), values: 1))
    let sales = Self.difference(salesBefore, try await read(Self.salesPeriodsSQL(where: filter), values: 4))
    if !cohorts.isEmpty {
      let (starts, months) = (cohorts.map { $0.0.cohort ?? $0.0.period }, cohorts.map(\.0.period))
      try await connection.query(
        """
        INSERT INTO analytics.cohort_cells (cohort, month, customers)
        SELECT * FROM unnest(\(starts)::timestamptz[], \(months)::timestamptz[], \(cohorts.map { $0.1[0] })::int8[])
        ON CONFLICT (cohort, month) DO UPDATE SET customers = cohort_cells.customers + EXCLUDED.customers
        """, logger: logger)
      // A separate statement: one statement cannot delete the rows it updates.
      try await connection.query(
        """
        DELETE FROM analytics.cohort_cells WHERE customers = 0
          AND (cohort, month) IN (SELECT * FROM unnest(\(starts)::timestamptz[], \(months)::timestamptz[]))
        """, logger: logger)
    }
    if !sales.isEmpty {
      let (units, periods, currencies, channels) = (
        sales.map(\.0.unit), sales.map(\.0.period), sales.map(\.0.currency), sales.map(\.0.channel)
      )
      try await connection.query(
        """
        INSERT INTO analytics.sales_periods (unit, period, currency, channel, orders, net_minor, active, new)
        SELECT * FROM unnest(\(units)::text[], \(periods)::timestamptz[], \(currencies)::text[], \(channels)::int4[],
                             \(sales.map { $0.1[0] })::int8[], \(sales.map { $0.1[1] })::int8[],
                             \(sales.map { $0.1[2] })::int8[], \(sales.map { $0.1[3] })::int8[])
        ON CONFLICT (unit, currency, channel, period) DO UPDATE SET
          orders = sales_periods.orders + EXCLUDED.orders, net_minor = sales_periods.net_minor + EXCLUDED.net_minor,
          active = sales_periods.active + EXCLUDED.active, new = sales_periods.new + EXCLUDED.new
        """, logger: logger)
      try await connection.query(
        """
        DELETE FROM analytics.sales_periods WHERE orders = 0
          AND (unit, period, currency, channel) IN (
            SELECT * FROM unnest(\(units)::text[], \(periods)::timestamptz[], \(currencies)::text[], \(channels)::int4[]))
        """, logger: logger)
    }
    try await connection.query(
      PostgresQuery(
        unsafeSQL: "DELETE FROM analytics.customer_scopes WHERE \(filter)",
        binds: binds), logger: logger)
    try await connection.query(
      PostgresQuery(
        unsafeSQL: "INSERT INTO analytics.customer_scopes (customer_id, currency, channel, first_kept_at, last_at) \(Self.customerScopesSQL(where: filter))",
        binds: binds), logger: logger)
  }

  /// `after` − `before`, key by key, without the keys that did not change; in key order (so that
  /// concurrent writers lock rows in the same order).
  private static func difference(_ before: [KeptKey: [Int64]], _ after: [KeptKey: [Int64]]) -> [(KeptKey, [Int64])] {
    var changes: [(KeptKey, [Int64])] = []
    for key in Set(before.keys).union(after.keys) {
      let old = before[key] ?? [], new = after[key] ?? []
      let delta = (0..<max(old.count, new.count)).map { (new.indices.contains($0) ? new[$0] : 0) - (old.indices.contains($0) ? old[$0] : 0) }
      if delta.contains(where: { $0 != 0 }) { changes.append((key, delta)) }
    }
    return changes.sorted { $0.0 < $1.0 }
  }
}

/// A row of a kept aggregate: a sales period (unit, UTC start, currency, channel) or a cohort cell
/// (`cohort`, and the month of activity in `period`).
struct KeptKey: Hashable, Comparable {
  let unit: String
  let period: Date
  let currency: String
  let channel: Int
  let cohort: Date?

  static func < (a: KeptKey, b: KeptKey) -> Bool {
    (a.unit, a.currency, a.channel, a.cohort ?? .distantPast, a.period) < (b.unit, b.currency, b.channel, b.cohort ?? .distantPast, b.period)
  }
}
