import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Sales over `analytics.orders` and `analytics.order_lines` (docs/ANALYTICS.md, "Sales"), and over
/// rollups kept by the same transactions that apply the orders, so an order counts as soon as its
/// `OrderPlaced` is applied.
extension AnalyticsStore {
  /// What a sales question is about: placed times in [from, to), one currency, optionally one channel.
  /// SQL compares a bound currency as `::bpchar`: the columns are `char(3)`, and a text parameter would
  /// cast the column to text instead, which no index on it serves.
  struct SalesRange: Sendable {
    let from: Date, to: Date
    let currency: String
    /// 0: every channel.
    let channel: Int
  }

  /// Orders, net revenue, new and returning customers per period (`unit`: `day`, `week` or `month`,
  /// cut in `timeZone`), every period of the range included, and the range as a whole. A customer is new
  /// in the period of their first order not cancelled (any currency or channel), returning after it.
  ///
  /// In a kept zone (UTC, and the reporting zone: AnalyticsStore+Zones) the whole periods come from
  /// `analytics.sales_periods`; in any other zone they are derived from the rows of the nearest kept
  /// zone (`periodRowsSQL`); only the partial ones (cut by the range) read the orders. A range that ends
  /// after now takes its customers from `analytics.customer_scopes` (their last order in the scope is in
  /// the range). `kept: false` reads everything from the orders (what the kept rows are checked against).
  func salesSummary(_ range: SalesRange, unit: String, timeZone: String, now: Date = Date(), kept: Bool = true) async throws
    -> (periods: [Rapport_Analytics_V1_SalesPeriod], total: Rapport_Analytics_V1_SalesPeriod)
  {
    // The range's customers do not depend on its periods: counted meanwhile, on another connection.
    async let counted = kept && range.to > now ? keptSalesCustomers(range) : salesCustomers(range)
    let periods =
      if !kept {
        try await salesPeriods(range, unit: unit, timeZone: timeZone)
      } else if let zone = KeptZone(timeZone) {
        try await withDerivationBase(for: zone, from: range.from, to: range.to) { base in
          try await keptSalesPeriods(range, unit: unit, zone: zone, base: base, now: now)
        }
      } else {
        try await salesPeriods(range, unit: unit, timeZone: timeZone)
      }
    var total = try await counted
    total.orders = periods.reduce(0) { $0 + $1.orders }
    let net = periods.reduce(0) { $0 + $1.netRevenue.amountMinor }
    total = Self.period(
      range.from, orders: total.orders, net: net, new: total.newCustomers, returning: total.returningCustomers,
      currency: range.currency)
    return (periods, total)
  }

  /// Every period of the range, read from the orders. Orders are first summed per customer and period,
  /// so no aggregate needs a sort.
  func salesPeriods(_ range: SalesRange, unit: String, timeZone: String) async throws -> [Rapport_Analytics_V1_SalesPeriod] {
    let rows = try await client.query(
      """
      WITH o AS (
        SELECT customer_id, date_trunc(\(unit), placed_at AT TIME ZONE \(timeZone)) AS period, count(*) AS n,
               sum(total_minor - refunded_minor) AS net
        FROM analytics.orders
        WHERE NOT cancelled AND currency = \(range.currency)::bpchar AND placed_at >= \(range.from) AND placed_at < \(range.to)
          AND (\(range.channel) = 0 OR channel = \(range.channel))
        GROUP BY 1, 2),
      c AS (
        SELECT o.period, o.n, o.net, date_trunc(\(unit), m.first_kept_order_at AT TIME ZONE \(timeZone)) AS first_period
        FROM o JOIN analytics.customer_metrics m USING (customer_id)),
      -- periods as local times: adding a day or a month to a local time follows the zone's calendar
      periods AS (
        SELECT generate_series(
                 date_trunc(\(unit), \(range.from)::timestamptz AT TIME ZONE \(timeZone)),
                 \(range.to)::timestamptz AT TIME ZONE \(timeZone) - interval '1 microsecond',
                 ('1 ' || \(unit))::interval) AS period)
      SELECT p.period AT TIME ZONE \(timeZone), coalesce(sum(c.n), 0)::int8, coalesce(sum(c.net), 0)::int8,
             count(*) FILTER (WHERE c.first_period = p.period), count(*) FILTER (WHERE c.first_period < p.period)
      FROM periods p LEFT JOIN c ON c.period = p.period
      GROUP BY p.period ORDER BY p.period
      """, logger: logger)
    var periods: [Rapport_Analytics_V1_SalesPeriod] = []
    for try await (start, orders, net, new, returning) in rows.decode((Date, Int64, Int64, Int64, Int64).self) {
      periods.append(Self.period(start, orders: orders, net: net, new: new, returning: returning, currency: range.currency))
    }
    return periods
  }

  /// Every period of the range from kept rows (`periodRowsSQL`: the zone's own, or derived from `base`'s). Whole
  /// periods (and the last one when the range ends after now, so no order of it can lie past the range)
  /// are taken as they are. A period the range cuts is read from the orders of the cut part, or — when
  /// the part outside the range is the shorter one — as the kept period less what lies outside
  /// (`keptPeriod(_:less:cut:)`).
  private func keptSalesPeriods(_ range: SalesRange, unit: String, zone: KeptZone, base: KeptZone, now: Date) async throws
    -> [Rapport_Analytics_V1_SalesPeriod]
  {
    var periods: [Rapport_Analytics_V1_SalesPeriod] = []
    var partial: [(index: Int, kept: KeptPeriod)] = []
    for kept in try await keptPeriods(range, unit: unit, zone: zone, base: base) {
      if kept.start < range.from || (kept.end > range.to && range.to <= now) { partial.append((periods.count, kept)) }
      periods.append(
        Self.period(kept.start, orders: kept.orders, net: kept.net, new: kept.new, returning: kept.active - kept.new, currency: range.currency))
    }
    // The first and the last period, when cut, are read at the same time.
    try await withThrowingTaskGroup(of: (Int, Rapport_Analytics_V1_SalesPeriod?).self) { group in
      for (index, kept) in partial {
        group.addTask {
          let cut = SalesRange(from: max(kept.start, range.from), to: min(kept.end, range.to), currency: range.currency, channel: range.channel)
          // Only orders up to now exist: that is how long each part can hold orders.
          let inside = min(cut.to, now).timeIntervalSince(cut.from)
          let outside = cut.from.timeIntervalSince(kept.start) + max(0, min(kept.end, now).timeIntervalSince(cut.to))
          if outside < inside { return (index, try await keptPeriod(kept, less: cut)) }
          return (index, try await salesPeriods(cut, unit: unit, timeZone: zone.identifier).first)
        }
      }
      for try await case (let index, let read?) in group { periods[index] = read }
    }
    return periods
  }

  /// Every period of the range in `zone` from the rows of the kept zone `base`: derived from
  /// `analytics.sales_hours` (`hourRowsSQL`) when every boundary is a whole UTC hour, otherwise from the
  /// orders in the slivers (`periodRowsSQL`).
  private func keptPeriods(_ range: SalesRange, unit: String, zone: KeptZone, base: KeptZone) async throws -> [KeptPeriod] {
    if zone != base, let periods = try await hourDerivedPeriods(range, unit: unit, zone: zone, base: base) { return periods }
    return try await keptPeriods(periodRowsSQL(range, unit: unit, zone: zone, base: base)) ?? []
  }

  /// The periods of the range in `zone` derived from `base`'s rows and `analytics.sales_hours`
  /// (`hourRowsSQL`); nil unless that is exact for every one of them.
  func hourDerivedPeriods(_ range: SalesRange, unit: String, zone: KeptZone, base: KeptZone) async throws -> [KeptPeriod]? {
    guard let gaps = SalesHour.gaps(of: unit) else { return nil }
    return try await keptPeriods(hourRowsSQL(range, unit: unit, gaps: gaps, zone: zone, base: base))
  }

  /// The rows of `query` (start, end, orders, net, active, new, exact); nil if a row is not exact.
  private func keptPeriods(_ query: PostgresQuery) async throws -> [KeptPeriod]? {
    var periods: [KeptPeriod] = []
    let rows = try await client.query(query, logger: logger)
    for try await (start, end, orders, net, active, new, exact) in rows.decode((Date, Date, Int64, Int64, Int64, Int64, Bool).self) {
      guard exact else { return nil }
      periods.append(KeptPeriod(start: start, end: end, orders: orders, net: net, active: active, new: new))
    }
    return periods
  }

  /// (start, end, orders, net, active, new, exact) per local period (`unit`) of the range in `zone`,
  /// derived from the rows of the kept zone `base`, `analytics.sales_hours` and `analytics.first_hours`
  /// (docs/ANALYTICS.md, "Sales"). A local period L and `base`'s period B of the same name differ by the
  /// hours of their slivers. Orders and net move by the slivers' hours. A customer counts in one and not
  /// the other only through an order in a sliver: in the sliver after the other period's end, the orders
  /// whose previous one is before both starts (`back`); in the sliver before the other period's start,
  /// the orders whose next one is at or after the other period's end (`ahead`); each counted at the gap
  /// of hours that asks (`gaps`: the unit's, and where they start in the arrays). A customer is new in a
  /// period when their first order is in it and their first in the scope is before its end: only
  /// customers with one of those two in a sliver can differ, and `first_hours` gives both hours. Exact
  /// (`exact`) when every boundary is a whole UTC hour, the two periods overlap and the gaps asked lie in
  /// the unit's; otherwise the caller derives from the orders.
  private func hourRowsSQL(_ range: SalesRange, unit: String, gaps: (gaps: ClosedRange<Int>, index: Int), zone: KeptZone, base: KeptZone)
    -> PostgresQuery
  {
    """
    WITH periods AS (
      SELECT p AT TIME ZONE \(unescaped: zone.sqlLiteral) AS ps, (p + ('1 ' || \(unit))::interval) AT TIME ZONE \(unescaped: zone.sqlLiteral) AS pe,
             p AT TIME ZONE \(unescaped: base.sqlLiteral) AS us, (p + ('1 ' || \(unit))::interval) AT TIME ZONE \(unescaped: base.sqlLiteral) AS ue
      FROM generate_series(
             date_trunc(\(unit), \(range.from)::timestamptz AT TIME ZONE \(unescaped: zone.sqlLiteral)),
             \(range.to)::timestamptz AT TIME ZONE \(unescaped: zone.sqlLiteral) - interval '1 microsecond',
             ('1 ' || \(unit))::interval) AS p),
    checked AS (
      SELECT *, extract(epoch FROM ps) % 3600 = 0 AND extract(epoch FROM pe) % 3600 = 0 AND extract(epoch FROM us) % 3600 = 0
                AND extract(epoch FROM ue) % 3600 = 0 AND greatest(pe, ue) - least(ps, us) <= make_interval(hours => \(gaps.gaps.upperBound)::int)
                AND least(pe - ps, ue - us) >= make_interval(hours => \(gaps.gaps.lowerBound - 1)::int)
                AND greatest(ps, us) <= least(pe, ue) AS exact
      FROM periods),
    slivers AS (
      SELECT ps, pe, us, ue, true AS starts, least(us, ps) AS a, greatest(us, ps) AS b FROM checked WHERE exact AND us <> ps
      UNION ALL
      SELECT ps, pe, us, ue, false, least(ue, pe), greatest(ue, pe) FROM checked WHERE exact AND ue <> pe),
    moved AS (
      SELECT s.ps, sum(x.sign * h.orders) AS orders, sum(x.sign * h.net_minor) AS net,
             -- the orders whose neighbour is at least `gaps[i]` hours away: i = hours to the other day's end, or
             -- from both starts and one more, less the first gap counted
             sum(x.sign * CASE
                   WHEN s.starts THEN h.ahead[extract(epoch FROM CASE WHEN s.ps < s.us THEN s.ue ELSE s.pe END - h.hour)::int / 3600 + \(gaps.index - gaps.gaps.lowerBound)]
                   ELSE h.back[extract(epoch FROM h.hour - least(s.ps, s.us))::int / 3600 + 1 + \(gaps.index - gaps.gaps.lowerBound)]
                 END) AS active
      FROM slivers s JOIN analytics.sales_hours h
        ON h.currency = \(range.currency)::bpchar AND h.channel = \(range.channel) AND h.hour >= s.a AND h.hour < s.b
        CROSS JOIN LATERAL (SELECT (h.hour >= s.ps AND h.hour < s.pe)::int - (h.hour >= s.us AND h.hour < s.ue)::int AS sign) x
      GROUP BY s.ps),
    fresh AS (
      SELECT ps, sum(CASE
                   -- first order in the sliver (`hour`), first in the scope `gap` hours on
                   WHEN kind = 1 THEN ((hour >= ps AND hour < pe AND ahead < pe)::int - (hour >= us AND hour < ue AND ahead < ue)::int) * customers
                   -- first in the scope in the sliver, first order `gap` hours back in both days or in neither
                   WHEN (back >= ps AND back < pe) = (back >= us AND back < ue)
                     THEN (back >= ps AND back < pe)::int * ((hour < pe)::int - (hour < ue)::int) * customers
                 END) AS new
      FROM (
        SELECT s.ps, s.pe, s.us, s.ue, f.hour, f.kind, f.customers,
               f.hour - make_interval(hours => f.gap) AS back, f.hour + make_interval(hours => f.gap) AS ahead
        FROM slivers s JOIN analytics.first_hours f
          ON f.currency = \(range.currency)::bpchar AND f.channel = \(range.channel) AND f.hour >= s.a AND f.hour < s.b) f
      GROUP BY ps)
    SELECT c.ps, c.pe, (coalesce(s.orders, 0) + coalesce(m.orders, 0))::int8, (coalesce(s.net_minor, 0) + coalesce(m.net, 0))::int8,
           (coalesce(s.active, 0) + coalesce(m.active, 0))::int8, (coalesce(s.new, 0) + coalesce(f.new, 0))::int8, c.exact
    FROM checked c
      LEFT JOIN analytics.sales_periods s
        ON s.zone = \(unescaped: base.sqlLiteral) AND s.unit = \(unit) AND s.currency = \(range.currency)::bpchar
           AND s.channel = \(range.channel) AND s.period = c.us
      LEFT JOIN moved m USING (ps)
      LEFT JOIN fresh f USING (ps)
    ORDER BY c.ps
    """
  }

  /// (start, end, orders, net, active, new, true) per period of the range in `zone`, from the rows of the kept
  /// zone `base` (`derivationBase`): `zone`'s own when it is kept. Otherwise derived (docs/ANALYTICS.md,
  /// "Sales"): the local period and `base`'s period of the same calendar name differ only by the orders in
  /// their symmetric difference — a sliver as long as the two zones' clocks are apart at either end — so
  /// orders and net are `base`'s row plus the sliver orders in the local period, less those in `base`'s;
  /// and customers and new customers are `base`'s row plus, for each customer with an order or their first
  /// order in a sliver (the only ones whose answer can differ), whether they count in the local period
  /// less whether they count in `base`'s: known from their sliver orders, or else from one index probe for
  /// an order in both periods. Exact in any zone; it reads a share of the range's orders of about the
  /// zones' distance over the period's length (`us`, `ue`: `base`'s period; no slivers when it is `zone`).
  private func periodRowsSQL(_ range: SalesRange, unit: String, zone: KeptZone, base: KeptZone) -> PostgresQuery {
    """
    WITH periods AS (
      SELECT p AT TIME ZONE \(unescaped: zone.sqlLiteral) AS ps, (p + ('1 ' || \(unit))::interval) AT TIME ZONE \(unescaped: zone.sqlLiteral) AS pe,
             p AT TIME ZONE \(unescaped: base.sqlLiteral) AS us, (p + ('1 ' || \(unit))::interval) AT TIME ZONE \(unescaped: base.sqlLiteral) AS ue
      FROM generate_series(
             date_trunc(\(unit), \(range.from)::timestamptz AT TIME ZONE \(unescaped: zone.sqlLiteral)),
             \(range.to)::timestamptz AT TIME ZONE \(unescaped: zone.sqlLiteral) - interval '1 microsecond',
             ('1 ' || \(unit))::interval) AS p),
    slivers AS (
      SELECT ps, pe, us, ue, least(us, ps) AS a, greatest(us, ps) AS b FROM periods WHERE us <> ps
      UNION ALL
      SELECT ps, pe, us, ue, least(ue, pe), greatest(ue, pe) FROM periods WHERE ue <> pe),
    moved AS MATERIALIZED (
      SELECT s.ps, s.pe, s.us, s.ue, o.customer_id, o.total_minor - o.refunded_minor AS net,
             (o.placed_at >= s.ps AND o.placed_at < s.pe)::int - (o.placed_at >= s.us AND o.placed_at < s.ue)::int AS sign
      FROM slivers s JOIN analytics.orders o ON o.currency = \(range.currency)::bpchar AND o.placed_at >= s.a AND o.placed_at < s.b
      WHERE NOT o.cancelled AND (\(range.channel) = 0 OR o.channel = \(range.channel))),
    -- per customer and period: an order only in the local period, an order only in the base one
    flagged AS (
      SELECT ps, pe, us, ue, customer_id, bool_or(sign > 0) AS p_only, bool_or(sign < 0) AS u_only FROM moved GROUP BY 1, 2, 3, 4, 5),
    touched AS (
      SELECT * FROM flagged
      UNION ALL
      SELECT s.ps, s.pe, s.us, s.ue, m.customer_id, false, false
      FROM slivers s JOIN analytics.customer_metrics m ON m.first_kept_order_at >= s.a AND m.first_kept_order_at < s.b
      WHERE NOT EXISTS (SELECT 1 FROM flagged f WHERE f.ps = s.ps AND f.customer_id = m.customer_id)),
    -- (the subqueries in select lists are asked per row, by index: the planner cannot know how few rows
    -- these are)
    firsts AS (
      SELECT t.*, coalesce(t.first >= t.ps AND t.first < t.pe, false) AS first_p, coalesce(t.first >= t.us AND t.first < t.ue, false) AS first_u
      FROM (SELECT t.*, (SELECT first_kept_order_at FROM analytics.customer_metrics m WHERE m.customer_id = t.customer_id) AS first FROM touched t OFFSET 0) t),
    -- whether they have an order in both periods, asked only where the answer can matter
    counted AS MATERIALIZED (
      SELECT ps, p_only, u_only, first_p, first_u,
             NOT (p_only = u_only AND (p_only OR first_p = first_u)) AND EXISTS (
               SELECT 1 FROM analytics.orders o
               WHERE o.customer_id = f.customer_id AND o.placed_at >= greatest(f.ps, f.us) AND o.placed_at < least(f.pe, f.ue)
                 AND NOT o.cancelled AND o.currency = \(range.currency)::bpchar AND (\(range.channel) = 0 OR o.channel = \(range.channel))) AS in_both
      FROM firsts f),
    customers AS (
      SELECT ps, sum((p_only OR in_both)::int - (u_only OR in_both)::int) AS active,
             sum(((p_only OR in_both) AND first_p)::int - ((u_only OR in_both) AND first_u)::int) AS new
      FROM counted GROUP BY ps),
    orders AS (SELECT ps, sum(sign) AS orders, sum(sign * net) AS net FROM moved GROUP BY ps)
    SELECT p.ps, p.pe, (coalesce(s.orders, 0) + coalesce(o.orders, 0))::int8, (coalesce(s.net_minor, 0) + coalesce(o.net, 0))::int8,
           (coalesce(s.active, 0) + coalesce(c.active, 0))::int8, (coalesce(s.new, 0) + coalesce(c.new, 0))::int8, true
    FROM periods p
      LEFT JOIN analytics.sales_periods s
        ON s.zone = \(unescaped: base.sqlLiteral) AND s.unit = \(unit) AND s.currency = \(range.currency)::bpchar
           AND s.channel = \(range.channel) AND s.period = p.us
      LEFT JOIN orders o USING (ps)
      LEFT JOIN customers c USING (ps)
    ORDER BY p.ps
    """
  }

  /// A kept period's row: orders, net revenue, customers and new customers.
  struct KeptPeriod {
    let start: Date, end: Date
    let orders: Int64, net: Int64, active: Int64, new: Int64
  }

  /// The part `cut` of a kept period, as the period less its orders outside `cut`: their count and net,
  /// and their customers who have no order inside `cut` (and of those, the ones new in the period).
  private func keptPeriod(_ kept: KeptPeriod, less cut: SalesRange) async throws -> Rapport_Analytics_V1_SalesPeriod {
    let rows = try await client.query(
      """
      WITH outside AS (
        SELECT customer_id, count(*) AS n, sum(total_minor - refunded_minor) AS net FROM analytics.orders
        WHERE NOT cancelled AND currency = \(cut.currency)::bpchar AND (\(cut.channel) = 0 OR channel = \(cut.channel))
          AND ((placed_at >= \(kept.start) AND placed_at < \(cut.from)) OR (placed_at >= \(cut.to) AND placed_at < \(kept.end)))
        GROUP BY customer_id),
      -- one index probe per customer: as a NOT EXISTS, the planner may turn it into an anti-join that reads
      -- every order inside the cut (it did at 1M once the table had been vacuumed)
      gone AS (
        SELECT o.customer_id FROM outside o
        WHERE NOT coalesce((
          SELECT true FROM analytics.orders x
          WHERE x.customer_id = o.customer_id AND NOT x.cancelled AND x.currency = \(cut.currency)::bpchar
            AND (\(cut.channel) = 0 OR x.channel = \(cut.channel)) AND x.placed_at >= \(cut.from) AND x.placed_at < \(cut.to)
          LIMIT 1), false))
      SELECT (SELECT coalesce(sum(n), 0)::int8 FROM outside), (SELECT coalesce(sum(net), 0)::int8 FROM outside),
             (SELECT count(*) FROM gone),
             (SELECT count(*) FROM gone g JOIN analytics.customer_metrics m USING (customer_id)
              WHERE m.first_kept_order_at >= \(kept.start) AND m.first_kept_order_at < \(kept.end))
      """, logger: logger)
    var (orders, net, active, new) = (kept.orders, kept.net, kept.active, kept.new)
    for try await (n, outsideNet, gone, goneNew) in rows.decode((Int64, Int64, Int64, Int64).self) {
      orders -= n
      net -= outsideNet
      active -= gone
      new -= goneNew
    }
    return Self.period(kept.start, orders: orders, net: net, new: new, returning: active - new, currency: cut.currency)
  }

  /// The customers of the range, read from the orders: new ones (first order not cancelled in the range)
  /// and returning ones, in `newCustomers` and `returningCustomers`.
  private func salesCustomers(_ range: SalesRange) async throws -> Rapport_Analytics_V1_SalesPeriod {
    let rows = try await client.query(
      """
      WITH o AS (
        SELECT DISTINCT customer_id FROM analytics.orders
        WHERE NOT cancelled AND currency = \(range.currency)::bpchar AND placed_at >= \(range.from) AND placed_at < \(range.to)
          AND (\(range.channel) = 0 OR channel = \(range.channel)))
      SELECT count(*) FILTER (WHERE m.first_kept_order_at >= \(range.from)),
             count(*) FILTER (WHERE m.first_kept_order_at < \(range.from))
      FROM o JOIN analytics.customer_metrics m USING (customer_id)
      """, logger: logger)
    return try await Self.customers(rows)
  }

  /// The customers of a range that ends after now, from `analytics.customer_scopes`: those whose last
  /// order in the currency (and channel) is in the range.
  private func keptSalesCustomers(_ range: SalesRange) async throws -> Rapport_Analytics_V1_SalesPeriod {
    // Whole UTC days from `analytics.scope_days`, the rest of the first day from the scopes themselves.
    let day = UTCPeriod.starts(of: range.from)[0]
    let next = day == range.from ? day : day.addingTimeInterval(86_400)
    let rows = try await client.query(
      """
      WITH s AS NOT MATERIALIZED (SELECT * FROM analytics.customer_scopes WHERE currency = \(range.currency)::bpchar AND channel = \(range.channel)),
      d AS (
        SELECT kind, sum(customers) AS n FROM analytics.scope_days
        WHERE currency = \(range.currency)::bpchar AND channel = \(range.channel) AND day >= \(next) GROUP BY kind),
      counted AS (
        SELECT coalesce((SELECT n FROM d WHERE kind = 1), 0)
                 + (SELECT count(*) FROM s WHERE first_kept_at >= \(range.from) AND first_kept_at < \(next)) AS new,
               coalesce((SELECT n FROM d WHERE kind = 0), 0)
                 + (SELECT count(*) FROM s WHERE last_at >= \(range.from) AND last_at < \(next)) AS active)
      SELECT new::int8, (active - new)::int8 FROM counted
      """, logger: logger)
    return try await Self.customers(rows)
  }

  private static func customers(_ rows: Rows) async throws -> Rapport_Analytics_V1_SalesPeriod {
    var counted = Rapport_Analytics_V1_SalesPeriod()
    for try await (new, returning) in rows.decode((Int64, Int64).self) {
      counted.newCustomers = new
      counted.returningCustomers = returning
    }
    return counted
  }

  private static func period(
    _ start: Date, orders: Int64, net: Int64, new: Int64, returning: Int64, currency: String
  ) -> Rapport_Analytics_V1_SalesPeriod {
    .with {
      $0.start = .init(microsecondsOf: start)
      $0.orders = orders
      $0.netRevenue = .money(net, currency)
      $0.averageOrderValue = .money(orders > 0 ? roundedDivision(net, orders) : 0, currency)
      $0.newCustomers = new
      $0.returningCustomers = returning
    }
  }

  /// SQL summing product sales of `relation` (order_id, placed_at, currency, channel, sku, quantity,
  /// net_minor) per UTC day and per UTC month, per channel and for all channels (channel 0): the rows of
  /// `analytics.product_sales`. With `keys`, those columns of `relation` lead each row and group it too.
  static func productSalesSQL(from relation: String, by keys: [String] = []) -> String {
    """
    SELECT \(keys.map { "s.\($0), " }.joined())g.grain, date_trunc(g.grain, s.placed_at, 'UTC') AS period, s.currency,
           c.channel, s.sku, sum(s.quantity) AS quantity, sum(s.net_minor) AS net_minor, count(DISTINCT s.order_id) AS orders
    FROM \(relation) s CROSS JOIN (VALUES ('day'), ('month')) AS g(grain)
    CROSS JOIN LATERAL (SELECT s.channel UNION SELECT 0) AS c(channel)
    GROUP BY \((1...5 + keys.count).map(String.init).joined(separator: ", "))
    """
  }

  /// How a range [from, to) is read: whole UTC months and days from `analytics.product_sales`, the
  /// partial days at either end from the orders themselves. At each end, a partial day is read whole from
  /// the rollup less its orders outside the range when that part is the shorter one (`less`,
  /// `lessAfter`), and likewise a partial month is read whole less its days outside the range (the day
  /// rows between `months` and `days`). A range that ends after `now` reads its last day and month whole:
  /// nothing of them lies past the range.
  struct RollupCover: Equatable, Sendable {
    /// Whole days [days.from, days.to) read as: the months of `months`, plus the day rows of `days`
    /// outside `months`, less the day rows of `months` outside `days`. Orders in [range.from, days.from)
    /// and [days.to, range.to) are added.
    var days: Range<Date>
    var months: Range<Date>
    /// Orders subtracted: the part of the first day before the range and of the last day after it, when
    /// read whole.
    var less: Range<Date>
    var lessAfter: Range<Date>

    /// No rollup: every order of [from, to) is read.
    static func ordersOnly(to: Date) -> RollupCover { RollupCover(from: to, to: to) }

    init(from: Date, to: Date, now: Date? = nil) {
      var utc = Calendar(identifier: .gregorian)
      utc.timeZone = TimeZone(identifier: "UTC")!
      func floor(_ date: Date, _ unit: Calendar.Component) -> Date { utc.dateInterval(of: unit, for: date)!.start }
      func ceil(_ date: Date, _ unit: Calendar.Component) -> Date {
        let start = floor(date, unit)
        return start == date ? start : utc.date(byAdding: unit, value: 1, to: start)!
      }
      // Whether [start, end) is worth reading whole and subtracting [start, inner) or [inner, end) from:
      // the part outside is the shorter one, or (`free`) nothing lies there.
      func whole(outside: TimeInterval, inside: TimeInterval, free: Bool = false) -> Bool {
        outside > 0 && (free || outside < inside)
      }
      let free = now.map { to > $0 } == true
      var firstDay = ceil(from, .day)
      var lastDay = free ? ceil(to, .day) : floor(to, .day)
      (less, lessAfter) = (from..<from, to..<to)
      guard firstDay < lastDay else {
        days = to..<to
        months = to..<to
        return
      }
      let dayOfFrom = floor(from, .day), dayAfterTo = ceil(to, .day)
      if whole(outside: from.timeIntervalSince(dayOfFrom), inside: firstDay.timeIntervalSince(from)) {
        less = dayOfFrom..<from
        firstDay = dayOfFrom
      }
      if lastDay < to, whole(outside: dayAfterTo.timeIntervalSince(to), inside: to.timeIntervalSince(lastDay)) {
        lessAfter = to..<dayAfterTo
        lastDay = dayAfterTo
      }
      days = firstDay..<lastDay
      let (up, down) = (ceil(firstDay, .month), floor(firstDay, .month))
      let (lastDown, lastUp) = (floor(lastDay, .month), ceil(lastDay, .month))
      var (firstMonth, lastMonth) = (up, lastDown)
      if up <= lastDown {
        if whole(outside: firstDay.timeIntervalSince(down), inside: up.timeIntervalSince(firstDay)) { firstMonth = down }
        if whole(outside: lastUp.timeIntervalSince(lastDay), inside: lastDay.timeIntervalSince(lastDown), free: free) {
          lastMonth = lastUp
        }
      } else {
        // Both ends in one month: read it whole when what lies outside the days is less than the days.
        let outside = firstDay.timeIntervalSince(down) + (free ? 0 : lastUp.timeIntervalSince(lastDay))
        if whole(outside: outside, inside: lastDay.timeIntervalSince(firstDay)) || (down == firstDay && free && lastUp > lastDay) {
          (firstMonth, lastMonth) = (down, lastUp)
        }
      }
      months = firstMonth < lastMonth ? firstMonth..<lastMonth : firstDay..<firstDay
    }
  }

  /// The `limit` products with the highest net line revenue in the range (orders not cancelled), with
  /// their title as analytics last saw it. With `customers`, only their orders (an RFM segment's), read
  /// from the orders; otherwise from the daily and monthly rollups and the orders of partial days — with
  /// `segment`, the rollups of that RFM segment and the orders of its kept members (see
  /// `segmentSalesReady(now:)`).
  func topProducts(_ range: SalesRange, limit: Int, customers: [UUID]? = nil, segment: Int? = nil, now: Date = Date())
    async throws -> [Rapport_Analytics_V1_ProductSales]
  {
    try await addingPendingPurchases()  // the products' titles
    let cover = customers == nil ? RollupCover(from: range.from, to: range.to, now: now) : .ordersOnly(to: range.to)
    let (days, months) = (cover.days, cover.months)
    let rows = try await client.query(
      """
      WITH raw AS (
        SELECT l.sku, sum(l.quantity) AS quantity, sum(l.net_minor) AS net_minor
        FROM analytics.order_lines l JOIN analytics.orders o USING (order_id)
        WHERE NOT o.cancelled AND o.currency = \(range.currency)::bpchar AND (\(range.channel) = 0 OR o.channel = \(range.channel))
          AND ((o.placed_at >= \(range.from) AND o.placed_at < \(days.lowerBound))
               OR (o.placed_at >= \(days.upperBound) AND o.placed_at < \(range.to)))
          AND (\(customers)::uuid[] IS NULL OR o.customer_id = ANY(\(customers)::uuid[]))
          AND (\(segment)::int4 IS NULL OR o.customer_id IN (SELECT customer_id FROM analytics.rfm_members WHERE segment = \(segment)))
        GROUP BY o.order_id, l.sku),
      outside AS (
        SELECT l.sku, sum(l.quantity) AS quantity, sum(l.net_minor) AS net_minor
        FROM analytics.order_lines l JOIN analytics.orders o USING (order_id)
        WHERE NOT o.cancelled AND o.currency = \(range.currency)::bpchar AND (\(range.channel) = 0 OR o.channel = \(range.channel))
          AND ((o.placed_at >= \(cover.less.lowerBound) AND o.placed_at < \(cover.less.upperBound))
               OR (o.placed_at >= \(cover.lessAfter.lowerBound) AND o.placed_at < \(cover.lessAfter.upperBound)))
          AND (\(segment)::int4 IS NULL OR o.customer_id IN (SELECT customer_id FROM analytics.rfm_members WHERE segment = \(segment)))
        GROUP BY o.order_id, l.sku),
      -- Channel 0 rows count every channel.
      rollup AS NOT MATERIALIZED (
        SELECT grain, period, sku, quantity, net_minor, orders FROM analytics.product_sales
        WHERE \(segment)::int4 IS NULL AND currency = \(range.currency)::bpchar AND channel = \(range.channel)
        UNION ALL
        SELECT grain, period, sku, quantity, net_minor, orders FROM analytics.rfm_segment_sales
        WHERE segment = \(segment) AND currency = \(range.currency)::bpchar AND channel = \(range.channel)),
      -- One branch per piece of the cover, each an index range scan (OR'd ranges made one bitmap scan
      -- of the table).
      parts AS (
        SELECT sku, sum(quantity) AS quantity, sum(net_minor) AS net_minor, count(*) AS orders FROM raw GROUP BY sku
        UNION ALL
        SELECT sku, -sum(quantity), -sum(net_minor), -count(*) FROM outside GROUP BY sku
        UNION ALL
        SELECT sku, quantity, net_minor, orders FROM rollup
        WHERE grain = 'month' AND period >= \(months.lowerBound) AND period < \(months.upperBound)
        UNION ALL
        SELECT sku, quantity, net_minor, orders FROM rollup
        WHERE grain = 'day' AND period >= \(days.lowerBound) AND period < \(months.lowerBound)
        UNION ALL
        SELECT sku, quantity, net_minor, orders FROM rollup
        WHERE grain = 'day' AND period >= \(months.upperBound) AND period < \(days.upperBound)
        UNION ALL
        SELECT sku, -quantity, -net_minor, -orders FROM rollup
        WHERE grain = 'day' AND period >= \(months.lowerBound) AND period < \(days.lowerBound)
        UNION ALL
        SELECT sku, -quantity, -net_minor, -orders FROM rollup
        WHERE grain = 'day' AND period >= \(days.upperBound) AND period < \(months.upperBound))
      SELECT p.sku, coalesce(min(i.title), p.sku), sum(p.quantity)::int8, sum(p.net_minor)::int8, sum(p.orders)::int8
      FROM parts p LEFT JOIN analytics.items i USING (sku)
      GROUP BY p.sku HAVING sum(p.orders) > 0 ORDER BY 4 DESC, 3 DESC, 1 LIMIT \(limit)
      """, logger: logger)
    var products: [Rapport_Analytics_V1_ProductSales] = []
    for try await (sku, title, quantity, net, orders) in rows.decode((String, String, Int64, Int64, Int64).self) {
      products.append(.with {
        $0.sku = sku
        $0.title = title
        $0.quantity = quantity
        $0.netRevenue = .money(net, range.currency)
        $0.orders = orders
      })
    }
    return products
  }
}
