import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Cohort retention (docs/ANALYTICS.md, "Sales"): customers by the month of their first order not
/// cancelled, and how many of each cohort ordered in each month since. In a kept zone (UTC, and the
/// reporting zone: AnalyticsStore+Zones) the cells are kept in `analytics.cohort_cells`
/// (AnalyticsStore+Kept), so a read does not grow with the history; in other time zones they are
/// derived from the nearest kept zone's cells (`derivedCohortsSQL`).
extension AnalyticsStore {
  /// Cohorts by first-order month (cut in `timeZone`) starting in [from, to), with their active
  /// customers per month since, up to the current month. `kept: false` reads the orders even in a kept
  /// zone (what the cells are checked against).
  func cohorts(from: Date, to: Date, timeZone: String, now: Date = Date(), kept: Bool = true) async throws
    -> [Rapport_Analytics_V1_Cohort]
  {
    // The cells span the cohorts' months and every month since, up to now.
    let cells: [(Date, Date, Int64)]
    if kept, let zone = KeptZone(timeZone) {
      cells = try await withDerivationBase(for: zone, from: from, to: max(to, now)) { base in
        if base != zone {
          return try await Self.cells(
            client.query(Self.derivedCohortsSQL(from: from, to: to, zone: zone, base: base, now: now), logger: logger))
        }
        return try await Self.cells(
          client.query(
            """
            SELECT cohort, month, customers FROM analytics.cohort_cells
            WHERE zone = \(zone.identifier) AND cohort >= date_trunc('month', \(from)::timestamptz, \(zone.identifier))
              AND cohort < \(to) AND customers > 0
            ORDER BY cohort, month
            """, logger: logger))
      }
    } else {
      cells = try await Self.cells(
        client.query(
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
          """, logger: logger))
    }
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone(identifier: timeZone) ?? .gmt
    func months(from start: Date, to end: Date) -> Int {
      calendar.dateComponents([.month], from: start, to: end).month ?? 0
    }
    let current = calendar.dateInterval(of: .month, for: now)?.start ?? now
    var cohorts: [Rapport_Analytics_V1_Cohort] = []
    for (cohortStart, month, active) in cells {
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

  /// (cohort, month, customers) rows, in their order.
  private static func cells(_ rows: Rows) async throws -> [(Date, Date, Int64)] {
    var cells: [(Date, Date, Int64)] = []
    for try await cell in rows.decode((Date, Date, Int64).self) { cells.append(cell) }
    return cells
  }

  /// (cohort, month, customers) of the cohorts starting in [from, to) in a zone that is not kept, from
  /// the cells of the kept zone `base` (`derivationBase`; docs/ANALYTICS.md, "Sales"). A month's sliver is
  /// what lies between its start in `base` and in the zone. A customer's cells by calendar name are the
  /// same in both zones unless an order of theirs or their first order lies in a sliver, so the cells are
  /// `base`'s (renamed to the zone's months), corrected for those customers:
  /// - a customer whose first order is in a sliver (their cohort may differ): less all their cells in
  ///   `base`, plus all their cells in the zone, from their orders;
  /// - any other customer with orders in slivers: for each month one of those orders falls in only in
  ///   `base` or only in the zone, the difference, unless they have an order in the month in both (one
  ///   index probe); or, when `base` is UTC and the month's boundaries are whole hours (`exact`), from
  ///   `analytics.cohort_hours` (`CohortHour`): per sliver hour and UTC cohort, the orders whose previous
  ///   (next) order is far enough back (on) that their customer gains or loses the month, as sales
  ///   periods are derived from `analytics.sales_hours`, less what the movers' orders add to those hours.
  /// Slivers are taken from the first cohort's month to two months after the last order or `now`.
  static func derivedCohortsSQL(from: Date, to: Date, zone: KeptZone, base: KeptZone, now: Date) -> PostgresQuery {
    """
    WITH bounds AS (
      SELECT l, l AT TIME ZONE \(unescaped: zone.sqlLiteral) AS zs, (l + interval '1 month') AT TIME ZONE \(unescaped: zone.sqlLiteral) AS ze,
             l AT TIME ZONE \(unescaped: base.sqlLiteral) AS us, (l + interval '1 month') AT TIME ZONE \(unescaped: base.sqlLiteral) AS ue
      FROM generate_series(
             date_trunc('month', \(from)::timestamptz AT TIME ZONE \(unescaped: zone.sqlLiteral)),
             date_trunc('month', greatest(\(now)::timestamptz, (SELECT max(placed_at) FROM analytics.orders)) AT TIME ZONE \(unescaped: base.sqlLiteral))
               + interval '2 months',
             interval '1 month') AS l),
    -- months whose customers' moves are read from analytics.cohort_hours (kept in UTC's months)
    months AS (
      SELECT *, \(unescaped: base == .utc ? "true" : "false") AND extract(epoch FROM zs) % 3600 = 0 AND extract(epoch FROM ze) % 3600 = 0
                AND least(ze - zs, ue - us) >= interval '\(unescaped: String(SalesHour.monthGaps[0] - 1)) hours'
                AND greatest(ze, ue) - least(zs, us) <= interval '\(unescaped: String(SalesHour.reach)) hours'
                AND greatest(zs, us) <= least(ze, ue)
                AND greatest(zs, us) - least(zs, us) <= interval '14 hours' AND greatest(ze, ue) - least(ze, ue) <= interval '14 hours' AS exact
      FROM bounds),
    earliest AS (SELECT least(min(zs), min(us)) AS at FROM months),
    slivers AS (SELECT least(zs, us) AS a, greatest(zs, us) AS b FROM months WHERE zs <> us),
    movers AS MATERIALIZED (
      SELECT m.customer_id, m.first_kept_order_at AS first
      FROM slivers s JOIN analytics.customer_metrics m ON m.first_kept_order_at >= s.a AND m.first_kept_order_at < s.b),
    moved AS MATERIALIZED (
      SELECT o.customer_id, date_trunc('month', o.placed_at AT TIME ZONE \(unescaped: base.sqlLiteral)) AS u, date_trunc('month', o.placed_at AT TIME ZONE \(unescaped: zone.sqlLiteral)) AS z
      FROM slivers s JOIN analytics.orders o ON o.placed_at >= s.a AND o.placed_at < s.b
      WHERE NOT o.cancelled),
    -- per customer and month: an order in it only in the base zone, an order in it only in this one
    flagged AS (
      SELECT customer_id, month, bool_or(in_base) AS u_only, bool_or(NOT in_base) AS z_only FROM (
        SELECT customer_id, u AS month, true AS in_base FROM moved UNION ALL SELECT customer_id, z, false FROM moved) x
      GROUP BY 1, 2 HAVING bool_or(in_base) <> bool_or(NOT in_base)),
    -- (the subqueries in the select lists are asked per row, by index: the planner cannot know how few rows
    -- these are)
    stayers AS MATERIALIZED (
      SELECT date_trunc('month', (SELECT first_kept_order_at FROM analytics.customer_metrics m WHERE m.customer_id = g.customer_id) AT TIME ZONE \(unescaped: base.sqlLiteral)) AS cohort,
             g.month,
             CASE
               WHEN EXISTS (
                 SELECT 1 FROM analytics.orders o
                 WHERE o.customer_id = g.customer_id AND o.placed_at >= greatest(mo.us, mo.zs) AND o.placed_at < least(mo.ue, mo.ze) AND NOT o.cancelled)
               THEN 0 ELSE g.z_only::int - g.u_only::int
             END AS customers
      FROM flagged g JOIN months mo ON mo.l = g.month
      WHERE NOT mo.exact AND NOT EXISTS (SELECT 1 FROM movers v WHERE v.customer_id = g.customer_id)),
    -- (the lateral subqueries below read by index: the planner cannot know how few rows the slivers and
    -- the movers are)
    -- In a month whose moves are kept by the hour: its slivers' hours, each customer who gains or loses
    -- the month counted once (as sales periods are derived: AnalyticsStore+Sales, `hourRowsSQL`), less
    -- what the movers (counted whole below) contribute to those hours.
    month_slivers AS (
      SELECT *, date_trunc('month', a + interval '15 hours', 'UTC') AS near FROM (
        SELECT l, zs, ze, us, ue, true AS starts, least(zs, us) AS a, greatest(zs, us) AS b FROM months WHERE exact AND zs <> us
        UNION ALL
        SELECT l, zs, ze, us, ue, false, least(ze, ue), greatest(ze, ue) FROM months WHERE exact AND ze <> ue) s),
    -- `near`: the UTC month whose start is within 15 hours of the hour (every sliver lies within 14 hours
    -- of a UTC month's start), so that movers' orders meet their slivers by hash
    mover_orders AS (
      SELECT date_trunc('hour', o.placed_at, 'UTC') AS hour, date_trunc('month', v.first, 'UTC') AS cohort,
             date_trunc('month', date_trunc('hour', o.placed_at, 'UTC') + interval '15 hours', 'UTC') AS near,
             coalesce(least(\(unescaped: String(SalesHour.far)), extract(epoch FROM date_trunc('hour', o.placed_at, 'UTC') - lag(date_trunc('hour', o.placed_at, 'UTC')) OVER w)::int8 / 3600), \(unescaped: String(SalesHour.far))) AS back,
             coalesce(least(\(unescaped: String(SalesHour.far)), extract(epoch FROM lead(date_trunc('hour', o.placed_at, 'UTC')) OVER w - date_trunc('hour', o.placed_at, 'UTC'))::int8 / 3600), \(unescaped: String(SalesHour.far))) AS ahead
      FROM movers v
        CROSS JOIN LATERAL (SELECT placed_at FROM analytics.orders o WHERE o.customer_id = v.customer_id AND NOT o.cancelled OFFSET 0) o
      WINDOW w AS (PARTITION BY v.customer_id ORDER BY o.placed_at)),
    hour_moves AS (
      SELECT cohort, l AS month, sum(sign * counted) AS customers FROM (
        SELECT h.cohort, s.l, (h.hour >= s.zs AND h.hour < s.ze)::int - (h.hour >= s.us AND h.hour < s.ue)::int AS sign,
               CASE WHEN s.starts THEN h.ahead[extract(epoch FROM CASE WHEN s.zs < s.us THEN s.ue ELSE s.ze END - h.hour)::int / 3600 - \(unescaped: String(SalesHour.monthGaps[0] - 1))]
                    ELSE h.back[extract(epoch FROM h.hour - least(s.zs, s.us))::int / 3600 + 1 - \(unescaped: String(SalesHour.monthGaps[0] - 1))] END AS counted
        FROM month_slivers s
          CROSS JOIN LATERAL (SELECT * FROM analytics.cohort_hours h WHERE h.hour >= s.a AND h.hour < s.b OFFSET 0) h
        UNION ALL
        SELECT m.cohort, s.l, (m.hour >= s.zs AND m.hour < s.ze)::int - (m.hour >= s.us AND m.hour < s.ue)::int,
               -CASE WHEN s.starts THEN (m.ahead >= extract(epoch FROM CASE WHEN s.zs < s.us THEN s.ue ELSE s.ze END - m.hour)::int / 3600)::int
                     ELSE (m.back >= extract(epoch FROM m.hour - least(s.zs, s.us))::int / 3600 + 1)::int END
        FROM month_slivers s JOIN mover_orders m ON m.near = s.near AND m.hour >= s.a AND m.hour < s.b) x
      GROUP BY 1, 2),
    moves AS MATERIALIZED (
      SELECT cohort, month, sign AS customers FROM (
        SELECT DISTINCT t.customer_id, z.sign, date_trunc('month', t.first AT TIME ZONE z.zone) AS cohort,
               date_trunc('month', o.placed_at AT TIME ZONE z.zone) AS month
        FROM movers t
          CROSS JOIN LATERAL (SELECT placed_at FROM analytics.orders o WHERE o.customer_id = t.customer_id AND NOT o.cancelled OFFSET 0) o
          CROSS JOIN (VALUES (\(unescaped: base.sqlLiteral), -1), (\(unescaped: zone.sqlLiteral), 1)) AS z(zone, sign)) x),
    cells AS (
      SELECT cohort AT TIME ZONE \(unescaped: base.sqlLiteral) AS cohort, month AT TIME ZONE \(unescaped: base.sqlLiteral) AS month, customers FROM analytics.cohort_cells
      WHERE zone = \(unescaped: base.sqlLiteral) AND cohort >= (SELECT at FROM earliest)
      UNION ALL SELECT cohort, month, customers FROM stayers
      UNION ALL SELECT cohort AT TIME ZONE 'UTC', month, customers FROM hour_moves
      UNION ALL SELECT cohort, month, customers FROM moves)
    SELECT cohort AT TIME ZONE \(unescaped: zone.sqlLiteral), month AT TIME ZONE \(unescaped: zone.sqlLiteral), sum(customers)::int8
    FROM cells
    WHERE cohort >= date_trunc('month', \(from)::timestamptz AT TIME ZONE \(unescaped: zone.sqlLiteral))
      AND cohort < \(to)::timestamptz AT TIME ZONE \(unescaped: zone.sqlLiteral)
    GROUP BY cohort, month HAVING sum(customers) > 0
    ORDER BY 1, 2
    """
  }
}
