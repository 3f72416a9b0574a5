import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Cohort retention (docs/ANALYTICS.md, "Sales"): customers by the month of their first order not
/// cancelled, and how many of each cohort ordered in each month since. In UTC the cells are kept in
/// `analytics.cohort_cells`, so a read does not grow with the history; other time zones read the orders.
extension AnalyticsStore {
  /// Cohorts by first-order month (cut in `timeZone`) starting in [from, to), with their active
  /// customers per month since, up to the current month. `kept: false` reads the orders even in UTC
  /// (what the cells are checked against).
  func cohorts(from: Date, to: Date, timeZone: String, now: Date = Date(), kept: Bool = true) async throws
    -> [Rapport_Analytics_V1_Cohort]
  {
    let rows: PostgresRowSequence
    if kept && timeZone == "UTC" {
      rows = try await client.query(
        """
        SELECT cohort, month, customers FROM analytics.cohort_cells
        WHERE cohort >= date_trunc('month', \(from)::timestamptz, 'UTC') AND cohort < \(to) AND customers > 0
        ORDER BY cohort, month
        """, logger: logger)
    } else {
      rows = try await client.query(
        """
        WITH firsts AS (
          SELECT customer_id, date_trunc('month', first_kept_order_at AT TIME ZONE \(timeZone)) AS cohort
          FROM analytics.customer_metrics WHERE first_kept_order_at IS NOT NULL),
        c AS (
          SELECT * FROM firsts
          WHERE cohort >= date_trunc('month', \(from)::timestamptz AT TIME ZONE \(timeZone))
            AND cohort < \(to)::timestamptz AT TIME ZONE \(timeZone)),
        activity AS (
          SELECT DISTINCT o.customer_id, c.cohort, date_trunc('month', o.placed_at AT TIME ZONE \(timeZone)) AS month
          FROM analytics.orders o JOIN c USING (customer_id) WHERE NOT o.cancelled)
        SELECT cohort AT TIME ZONE \(timeZone), month AT TIME ZONE \(timeZone), count(*)::int8
        FROM activity GROUP BY cohort, month ORDER BY cohort, month
        """, logger: logger)
    }
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: timeZone) ?? .gmt
    func months(from start: Date, to end: Date) -> Int {
      calendar.dateComponents([.month], from: start, to: end).month ?? 0
    }
    let current = calendar.dateInterval(of: .month, for: now)?.start ?? now
    var cohorts: [Rapport_Analytics_V1_Cohort] = []
    for try await (cohortStart, month, active) in rows.decode((Date, Date, Int64).self) {
      if cohorts.last?.month.date != cohortStart {
        var cohort = Rapport_Analytics_V1_Cohort()
        cohort.month = .init(microsecondsOf: cohortStart)
        cohort.active = Array(repeating: 0, count: max(months(from: cohortStart, to: current), 0) + 1)
        cohorts.append(cohort)
      }
      let k = months(from: cohortStart, to: month)
      guard k >= 0, k < cohorts[cohorts.count - 1].active.count else { continue }
      cohorts[cohorts.count - 1].active[k] = active
      if k == 0 { cohorts[cohorts.count - 1].customers = active }
    }
    return cohorts
  }

  /// SQL: each (cohort, month) with how many of the customers `filter` selects (a condition on
  /// `customer_id`) are in the cohort and ordered in the month, in UTC. A customer's cohort is the month
  /// of their first order not cancelled, as `customer_metrics.first_kept_order_at` has it.
  static func cohortCellsSQL(where filter: String) -> String {
    """
    SELECT cohort, month, count(*)::int8 AS customers FROM (
      SELECT DISTINCT customer_id, date_trunc('month', placed_at, 'UTC') AS month,
             date_trunc('month', min(placed_at) OVER (PARTITION BY customer_id), 'UTC') AS cohort
      FROM analytics.orders WHERE NOT cancelled AND (\(filter))) x
    GROUP BY cohort, month
    """
  }

  /// Runs `change`, which may change the orders not cancelled of `customers` (or of the survivors they
  /// were merged into), and moves `analytics.cohort_cells` by the difference between what those
  /// customers contributed before and after — in `change`'s transaction, so the cells always equal
  /// `cohortCellsSQL` over everyone.
  func keepingCohorts(
    of customers: [UUID], on connection: PostgresConnection, _ change: () async throws -> Void
  ) async throws {
    guard !customers.isEmpty else { return try await change() }
    var binds = PostgresBindings()
    binds.append(customers)
    let query = PostgresQuery(
      unsafeSQL: Self.cohortCellsSQL(where: """
        customer_id = ANY($1::uuid[])
        OR customer_id IN (SELECT survivor_id FROM analytics.customer_aliases WHERE duplicate_id = ANY($1::uuid[]))
        """), binds: binds)
    func contributions() async throws -> [CohortCell: Int64] {
      let rows = try await connection.query(query, logger: logger)
      var cells: [CohortCell: Int64] = [:]
      for try await (cohort, month, count) in rows.decode((Date, Date, Int64).self) {
        cells[CohortCell(cohort: cohort, month: month)] = count
      }
      return cells
    }
    let before = try await contributions()
    try await change()
    let after = try await contributions()
    var changed = after.map { ($0.key, $0.value - (before[$0.key] ?? 0)) }
    changed += before.filter { after[$0.key] == nil }.map { ($0.key, -$0.value) }
    changed = changed.filter { $0.1 != 0 }.sorted { ($0.0.cohort, $0.0.month) < ($1.0.cohort, $1.0.month) }
    guard !changed.isEmpty else { return }
    let (cohorts, months) = (changed.map(\.0.cohort), changed.map(\.0.month))
    try await connection.query(
      """
      INSERT INTO analytics.cohort_cells (cohort, month, customers)
      SELECT * FROM unnest(\(cohorts)::timestamptz[], \(months)::timestamptz[], \(changed.map(\.1))::int8[])
      ON CONFLICT (cohort, month) DO UPDATE SET customers = cohort_cells.customers + EXCLUDED.customers
      """, logger: logger)
    // A separate statement: one statement cannot delete the rows it updates.
    try await connection.query(
      """
      DELETE FROM analytics.cohort_cells WHERE customers = 0
        AND (cohort, month) IN (SELECT * FROM unnest(\(cohorts)::timestamptz[], \(months)::timestamptz[]))
      """, logger: logger)
  }
}

/// A cohort (first-order month) and a month of activity, both UTC month starts.
struct CohortCell: Hashable {
  let cohort: Date
  let month: Date
}
