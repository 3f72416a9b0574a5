import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Cohort retention (docs/ANALYTICS.md, "Sales"): customers by the month of their first order not
/// cancelled, and how many of each cohort ordered in each month since. In a kept zone (UTC, and the
/// reporting zone: AnalyticsStore+Zones) the cells are kept in `analytics.cohort_cells`
/// (AnalyticsStore+Kept), so a read does not grow with the history; other time zones read the orders.
extension AnalyticsStore {
  /// Cohorts by first-order month (cut in `timeZone`) starting in [from, to), with their active
  /// customers per month since, up to the current month. `kept: false` reads the orders even in a kept
  /// zone (what the cells are checked against).
  func cohorts(from: Date, to: Date, timeZone: String, now: Date = Date(), kept: Bool = true) async throws
    -> [Rapport_Analytics_V1_Cohort]
  {
    let rows: PostgresRowSequence
    if kept, let zone = try await keptZone(timeZone) {
      rows = try await client.query(
        """
        SELECT cohort, month, customers FROM analytics.cohort_cells
        WHERE zone = \(zone.identifier) AND cohort >= date_trunc('month', \(from)::timestamptz, \(zone.identifier))
          AND cohort < \(to) AND customers > 0
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
}
