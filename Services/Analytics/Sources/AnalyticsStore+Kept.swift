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

  /// A timestamp as a SQL literal (`.distantFuture`: infinity).
  private static func literal(_ date: Date) -> String {
    date == .distantFuture ? "'infinity'::timestamptz" : "'\(date.ISO8601Format())'::timestamptz"
  }

  /// SQL: (cohort, month, customers) of the customers `filter` selects, months cut in `zone`.
  static func cohortCellsSQL(where filter: String, zone: KeptZone = .utc) -> String {
    cohortCellsSQL(orders: keptOrdersSQL(where: filter), zone: zone)
  }

  /// SQL: (cohort, month, customers) of the cohorts starting in [from, to) in `zone` (whole seconds;
  /// `to`: `.distantFuture` for no end): the orders not cancelled of the customers whose first is there.
  static func cohortCellsSQL(firstFrom from: Date, to: Date, zone: KeptZone) -> String {
    cohortCellsSQL(
      orders: """
        o AS (
          SELECT o.customer_id, o.placed_at, m.first_kept_order_at AS first_at
          FROM analytics.customer_metrics m JOIN analytics.orders o USING (customer_id)
          WHERE m.first_kept_order_at >= \(literal(from)) AND m.first_kept_order_at < \(literal(to)) AND NOT o.cancelled)
        """, zone: zone)
  }

  /// `orders`: a CTE `o` of (customer_id, placed_at, first_at).
  private static func cohortCellsSQL(orders: String, zone: KeptZone) -> String {
    """
    WITH \(orders)
    SELECT cohort, month, count(*)::int8 AS customers FROM (
      SELECT DISTINCT customer_id, date_trunc('month', placed_at, \(zone.sqlLiteral)) AS month,
             date_trunc('month', first_at, \(zone.sqlLiteral)) AS cohort FROM o) x
    GROUP BY cohort, month
    """
  }

  /// SQL: (unit, period, currency, channel, orders, net_minor, active, new) of the customers `filter`
  /// selects, periods cut in `zone`; channel 0 counts every channel.
  static func salesPeriodsSQL(where filter: String, zone: KeptZone = .utc) -> String {
    salesPeriodsSQL(orders: keptOrdersSQL(where: filter), zone: zone)
  }

  /// SQL: the same rows for every customer, of the periods starting in [from, to) in `zone` (whole
  /// seconds; `to`: `.distantFuture` for no end): from the orders placed from `from` to a week and a day
  /// past `to` (a week runs 7 days, and an hour more when the clocks go back).
  static func salesPeriodsSQL(placedFrom from: Date, to: Date, zone: KeptZone) -> String {
    let end = to == .distantFuture ? to : to.addingTimeInterval(8 * 86_400)
    return salesPeriodsSQL(
      orders: """
        o AS (
          SELECT o.customer_id, o.placed_at, o.currency::text AS currency, o.channel, o.total_minor - o.refunded_minor AS net,
                 m.first_kept_order_at AS first_at
          FROM analytics.orders o JOIN analytics.customer_metrics m USING (customer_id)
          WHERE NOT o.cancelled AND o.placed_at >= \(literal(from)) AND o.placed_at < \(literal(end)))
        """, zone: zone, periods: "period >= \(literal(from)) AND period < \(literal(to))")
  }

  /// `orders`: a CTE `o` of (customer_id, placed_at, currency, channel, net, first_at); `periods`: a
  /// condition on the rows' `period`.
  private static func salesPeriodsSQL(orders: String, zone: KeptZone, periods: String = "true") -> String {
    """
    WITH \(orders),
    g AS (
      SELECT u.unit, date_trunc(u.unit, o.placed_at, \(zone.sqlLiteral)) AS period, o.currency, c.channel, o.customer_id,
             min(o.first_at) AS first_at, count(*) AS n, sum(o.net) AS net
      FROM o CROSS JOIN (VALUES ('day'), ('week'), ('month')) AS u(unit)
      CROSS JOIN LATERAL (SELECT o.channel UNION SELECT 0) AS c(channel)
      GROUP BY 1, 2, 3, 4, 5)
    SELECT unit, period, currency, channel, sum(n)::int8, sum(net)::int8, count(*)::int8,
           count(*) FILTER (WHERE date_trunc(unit, first_at, \(zone.sqlLiteral)) = period)::int8
    FROM g WHERE \(periods) GROUP BY 1, 2, 3, 4
    """
  }

  /// SQL: the orders not cancelled of every customer by scope (channel 0 too), with their UTC hour, the
  /// hours back to the previous order of the scope and on to the next (`SalesHour.far` past
  /// `SalesHour.reach`, or with none), and the hours from the customer's first order (`from_first`) on the
  /// first of the scope (`n` = 1).
  private static let scopeHoursSQL = """
    WITH \(keptOrdersSQL(where: "true")),
    s AS (
      SELECT o.currency, c.channel, date_trunc('hour', o.placed_at, 'UTC') AS hour, o.net,
             date_trunc('hour', o.first_at, 'UTC') AS first_hour,
             lag(date_trunc('hour', o.placed_at, 'UTC')) OVER w AS prev_hour, lead(date_trunc('hour', o.placed_at, 'UTC')) OVER w AS next_hour,
             row_number() OVER w AS n
      FROM o CROSS JOIN LATERAL (SELECT o.channel UNION SELECT 0) AS c(channel)
      WINDOW w AS (PARTITION BY o.customer_id, o.currency, c.channel ORDER BY o.placed_at)),
    g AS (
      SELECT currency, channel, hour, net, first_hour, n,
             coalesce(least(\(SalesHour.far), extract(epoch FROM hour - prev_hour)::int8 / 3600), \(SalesHour.far)) AS back,
             coalesce(least(\(SalesHour.far), extract(epoch FROM next_hour - hour)::int8 / 3600), \(SalesHour.far)) AS ahead,
             extract(epoch FROM hour - first_hour)::int8 / 3600 AS from_first
      FROM s)
    """

  /// SQL: the rows of `analytics.sales_hours` (`SalesHour`) of every customer, as `KeptContributions`
  /// computes them: (currency, channel, hour, orders, net_minor, back, ahead).
  static let salesHoursSQL = "\(scopeHoursSQL)\n\(salesHoursFromScopes)"

  /// SQL: the rows of `analytics.first_hours` (`FirstHour`) of every customer: (currency, channel, hour,
  /// kind, gap, customers).
  static let firstHoursSQL = "\(scopeHoursSQL)\n\(firstHoursFromScopes)"

  /// SQL: fills `analytics.sales_hours` and `analytics.first_hours` from every order, reading them once.
  static let fillHoursSQL = """
    \(scopeHoursSQL),
    sales AS (INSERT INTO analytics.sales_hours \(salesHoursFromScopes))
    INSERT INTO analytics.first_hours \(firstHoursFromScopes)
    """

  /// SQL: the rows of `analytics.cohort_hours` (`CohortHour`) of every customer: (hour, cohort, back,
  /// ahead).
  static let cohortHoursSQL = """
    WITH \(keptOrdersSQL(where: "true")),
    s AS (
      SELECT date_trunc('hour', placed_at, 'UTC') AS hour, date_trunc('month', first_at, 'UTC') AS cohort,
             lag(date_trunc('hour', placed_at, 'UTC')) OVER w AS prev_hour, lead(date_trunc('hour', placed_at, 'UTC')) OVER w AS next_hour
      FROM o WINDOW w AS (PARTITION BY customer_id ORDER BY placed_at)),
    g AS (
      SELECT hour, cohort,
             coalesce(least(\(SalesHour.far), extract(epoch FROM hour - prev_hour)::int8 / 3600), \(SalesHour.far)) AS back,
             coalesce(least(\(SalesHour.far), extract(epoch FROM next_hour - hour)::int8 / 3600), \(SalesHour.far)) AS ahead
      FROM s)
    SELECT hour, cohort,
           ARRAY[\(SalesHour.monthGaps.map { "count(*) FILTER (WHERE back >= \($0))::int4" }.joined(separator: ", "))],
           ARRAY[\(SalesHour.monthGaps.map { "count(*) FILTER (WHERE ahead >= \($0))::int4" }.joined(separator: ", "))]
    FROM g GROUP BY 1, 2
    """

  /// The rows of `analytics.sales_hours` from `scopeHoursSQL`'s `g`: one count per gap, in one pass.
  private static let salesHoursFromScopes = """
    SELECT currency, channel, hour, count(*)::int8, sum(net)::int8,
           ARRAY[\(SalesHour.gaps.map { "count(*) FILTER (WHERE back >= \($0))::int4" }.joined(separator: ", "))],
           ARRAY[\(SalesHour.gaps.map { "count(*) FILTER (WHERE ahead >= \($0))::int4" }.joined(separator: ", "))]
    FROM g GROUP BY 1, 2, 3
    """

  /// The rows of `analytics.first_hours` from `scopeHoursSQL`'s `g`.
  private static let firstHoursFromScopes = """
    SELECT currency, channel, hour, 0::int2, from_first::int2, count(*)::int8 FROM g
    WHERE n = 1 AND from_first <= \(SalesHour.reach) GROUP BY 1, 2, 3, 5
    UNION ALL
    SELECT currency, channel, first_hour, 1::int2, from_first::int2, count(*)::int8 FROM g
    WHERE n = 1 AND from_first <= \(SalesHour.reach) GROUP BY 1, 2, 3, 5
    """

  /// SQL: (customer_id, currency, channel, first_kept_at, last_at, orders, net_minor) of the customers
  /// `filter` selects.
  static func customerScopesSQL(where filter: String) -> String {
    """
    WITH \(keptOrdersSQL(where: filter))
    SELECT o.customer_id, o.currency, c.channel, min(o.first_at) AS first_kept_at, max(o.placed_at) AS last_at,
           count(*) AS orders, sum(o.net) AS net_minor
    FROM o CROSS JOIN LATERAL (SELECT o.channel UNION SELECT 0) AS c(channel)
    GROUP BY 1, 2, 3
    """
  }

  /// Runs `change`, which may change the orders of `customers` (or of the survivors they were merged
  /// into), and moves the kept aggregates by what it changed. With `placing`, the change only adds those
  /// orders (the ones not stored yet), and what they change is computed without reading the orders again.
  func keepingAggregates(
    of customers: [UUID], placing incoming: [KeptOrder]? = nil, on connection: PostgresConnection,
    _ change: () async throws -> Void
  ) async throws {
    guard !customers.isEmpty else { return try await change() }
    // The zones the sales periods and cohort cells are kept in; adding a zone waits for this
    // transaction, and this one for the addition (AnalyticsStore+Zones).
    let zones = try await keptZones(sharing: connection)
    // The customers and the survivors of those merged away (an order for a merged id is the survivor's).
    let aliases = try await connection.query(
      "SELECT duplicate_id, survivor_id FROM analytics.customer_aliases WHERE duplicate_id = ANY(\(customers)::uuid[])",
      logger: logger)
    var survivorOf: [UUID: UUID] = [:]
    for try await (duplicate, survivor) in aliases.decode((UUID, UUID).self) { survivorOf[duplicate] = survivor }
    let touched = Set(customers).union(survivorOf.values).sorted { $0.uuidString < $1.uuidString }
    var before: [KeptOrder], after: [KeptOrder]
    var window = PlacementWindow()
    if let incoming {
      // Placements: the orders not stored yet are added. A customer with kept orders, none of whose new
      // orders comes before their first and who takes no part in a merge, is read only in the weeks
      // and months of their new orders, and their scopes come from `analytics.customer_scopes`: what
      // they contribute elsewhere does not change. Other customers' orders are read whole.
      let fresh = try await unstored(incoming, on: connection)
      let aliased = Set(survivorOf.keys).union(survivorOf.values)
      window = try await placementWindow(
        for: fresh.filter { !aliased.contains($0.customer) }, of: touched.filter { !aliased.contains($0) },
        zones: zones.map(\.zone), on: connection)
      before = try await keptOrders(of: touched.filter { window.firsts[$0] == nil }, on: connection)
        + window.orders
      try await change()
      after = before + fresh.map { $0.of(survivorOf[$0.customer] ?? $0.customer) }
    } else {
      before = try await keptOrders(of: touched, on: connection)
      try await change()
      after = try await keptOrders(of: touched, on: connection)
    }
    let cut = zones.map(\.zone)
    // The window's customers only gain orders: their periods without one of those stay as they are.
    let placing = Dictionary(grouping: (incoming ?? []).filter { window.firsts[$0.customer] != nil }, by: \.customer)
      .mapValues { $0.map(\.placed) }
    var (old, new) = (
      KeptContributions(before, zones: cut, firsts: window.firsts, placing: placing),
      KeptContributions(after, zones: cut, firsts: window.firsts, placing: placing)
    )
    window.replaceScopes(old: &old, new: &new, placed: after)
    // Rows of a zone being built count once their month is built (AnalyticsStore+Zones).
    let (sales, cohorts) = try await withoutUnbuilt(
      Self.difference(old.sales, new.sales), Self.difference(old.cohorts, new.cohorts), zones: zones, on: connection)
    let scopes = new.scopes.filter { old.scopes[$0.key] != $0.value }.sorted { $0.key < $1.key }
    let gone = old.scopes.keys.filter { new.scopes[$0] == nil }.sorted()
    let days = Self.scopeDayChanges(old.scopes, new.scopes)
    let (hours, firsts) = (Self.difference(old.hours, new.hours), Self.difference(old.firstHours, new.firstHours))
    let cohortHours = Self.difference(old.cohortHours, new.cohortHours)
    guard !sales.isEmpty || !cohorts.isEmpty || !scopes.isEmpty || !gone.isEmpty || !hours.isEmpty || !firsts.isEmpty || !cohortHours.isEmpty
    else { return }
    let months = SalesHour.monthGaps.count
    // Rows that fall to zero stay (reads treat them as absent): one statement cannot delete what it
    // updates, and a second statement per change is not worth it.
    try await connection.query(
      """
      WITH sales AS (
        INSERT INTO analytics.sales_periods (zone, unit, period, currency, channel, orders, net_minor, active, new)
        SELECT * FROM unnest(\(sales.map(\.0.zone))::text[], \(sales.map(\.0.unit))::text[], \(sales.map(\.0.period))::timestamptz[],
                             \(sales.map(\.0.currency))::text[], \(sales.map(\.0.channel))::int4[],
                             \(sales.map { $0.1[0] })::int8[], \(sales.map { $0.1[1] })::int8[],
                             \(sales.map { $0.1[2] })::int8[], \(sales.map { $0.1[3] })::int8[])
        ON CONFLICT (zone, unit, currency, channel, period) DO UPDATE SET
          orders = sales_periods.orders + EXCLUDED.orders, net_minor = sales_periods.net_minor + EXCLUDED.net_minor,
          active = sales_periods.active + EXCLUDED.active, new = sales_periods.new + EXCLUDED.new),
      cohorts AS (
        INSERT INTO analytics.cohort_cells (zone, cohort, month, customers)
        SELECT * FROM unnest(\(cohorts.map(\.0.zone))::text[], \(cohorts.map(\.0.cohort))::timestamptz[],
                             \(cohorts.map(\.0.period))::timestamptz[], \(cohorts.map { $0.1[0] })::int8[])
        ON CONFLICT (zone, cohort, month) DO UPDATE SET customers = cohort_cells.customers + EXCLUDED.customers),
      days AS (
        INSERT INTO analytics.scope_days (currency, channel, kind, day, customers)
        SELECT * FROM unnest(\(days.map(\.0.currency))::text[], \(days.map(\.0.channel))::int4[], \(days.map(\.0.kind))::int4[],
                             \(days.map(\.0.day))::timestamptz[], \(days.map(\.1))::int8[])
        ON CONFLICT (currency, channel, kind, day) DO UPDATE SET customers = scope_days.customers + EXCLUDED.customers),
      -- `back` and `ahead` of every row, one after the other (`SalesHour.gaps` each), added element by element
      hours AS (
        INSERT INTO analytics.sales_hours (currency, channel, hour, orders, net_minor, back, ahead)
        SELECT u.currency, u.channel, u.hour, u.orders, u.net,
               (\(hours.flatMap { $0.1[2..<(2 + SalesHour.gaps.count)].map { Int32($0) } })::int4[])[(u.n - 1) * \(SalesHour.gaps.count) + 1 : u.n * \(SalesHour.gaps.count)],
               (\(hours.flatMap { $0.1[(2 + SalesHour.gaps.count)...].map { Int32($0) } })::int4[])[(u.n - 1) * \(SalesHour.gaps.count) + 1 : u.n * \(SalesHour.gaps.count)]
        FROM unnest(\(hours.map(\.0.currency))::text[], \(hours.map(\.0.channel))::int4[], \(hours.map(\.0.hour))::timestamptz[],
                    \(hours.map { $0.1[0] })::int8[], \(hours.map { $0.1[1] })::int8[])
               WITH ORDINALITY AS u(currency, channel, hour, orders, net, n)
        ON CONFLICT (currency, channel, hour) DO UPDATE SET
          orders = sales_hours.orders + EXCLUDED.orders, net_minor = sales_hours.net_minor + EXCLUDED.net_minor,
          back = ARRAY(SELECT x + y FROM unnest(sales_hours.back, EXCLUDED.back) WITH ORDINALITY AS t(x, y, i) ORDER BY i),
          ahead = ARRAY(SELECT x + y FROM unnest(sales_hours.ahead, EXCLUDED.ahead) WITH ORDINALITY AS t(x, y, i) ORDER BY i)),
      cohort_hours AS (
        INSERT INTO analytics.cohort_hours (hour, cohort, back, ahead)
        SELECT u.hour, u.cohort,
               (\(cohortHours.flatMap { $0.1[..<months].map { Int32($0) } })::int4[])[(u.n - 1) * \(months) + 1 : u.n * \(months)],
               (\(cohortHours.flatMap { $0.1[months...].map { Int32($0) } })::int4[])[(u.n - 1) * \(months) + 1 : u.n * \(months)]
        FROM unnest(\(cohortHours.map(\.0.hour))::timestamptz[], \(cohortHours.map(\.0.cohort))::timestamptz[]) WITH ORDINALITY AS u(hour, cohort, n)
        ON CONFLICT (hour, cohort) DO UPDATE SET
          back = ARRAY(SELECT x + y FROM unnest(cohort_hours.back, EXCLUDED.back) WITH ORDINALITY AS t(x, y, i) ORDER BY i),
          ahead = ARRAY(SELECT x + y FROM unnest(cohort_hours.ahead, EXCLUDED.ahead) WITH ORDINALITY AS t(x, y, i) ORDER BY i)),
      firsts AS (
        INSERT INTO analytics.first_hours (currency, channel, hour, kind, gap, customers)
        SELECT * FROM unnest(\(firsts.map(\.0.currency))::text[], \(firsts.map(\.0.channel))::int4[], \(firsts.map(\.0.hour))::timestamptz[],
                             \(firsts.map { $0.0.kind })::int2[], \(firsts.map { $0.0.gap })::int2[], \(firsts.map { $0.1[0] })::int8[])
        ON CONFLICT (currency, channel, hour, kind, gap) DO UPDATE SET customers = first_hours.customers + EXCLUDED.customers),
      -- The customers' kept RFM segments are due again (AnalyticsStore+SegmentSales): a row marked
      -- again gets a new version, so that a scoring pass that read the old one leaves it pending.
      pending AS (
        INSERT INTO analytics.rfm_pending (customer_id) SELECT * FROM unnest(\(touched)::uuid[]) ORDER BY 1
        ON CONFLICT (customer_id) DO UPDATE SET version = rfm_pending.version + 1)
      INSERT INTO analytics.customer_scopes (customer_id, currency, channel, first_kept_at, last_at, orders, net_minor)
      SELECT * FROM unnest(\(scopes.map(\.key.customer))::uuid[], \(scopes.map(\.key.currency))::text[],
                           \(scopes.map(\.key.channel))::int4[], \(scopes.map(\.value.first))::timestamptz[],
                           \(scopes.map(\.value.last))::timestamptz[], \(scopes.map(\.value.orders))::int8[],
                           \(scopes.map(\.value.net))::int8[])
      ON CONFLICT (customer_id, currency, channel) DO UPDATE SET first_kept_at = EXCLUDED.first_kept_at,
        last_at = EXCLUDED.last_at, orders = EXCLUDED.orders, net_minor = EXCLUDED.net_minor
      """, logger: logger)
    if !gone.isEmpty {
      try await connection.query(
        """
        DELETE FROM analytics.customer_scopes WHERE (customer_id, currency, channel) IN (
          SELECT * FROM unnest(\(gone.map(\.customer))::uuid[], \(gone.map(\.currency))::text[], \(gone.map(\.channel))::int4[]))
        """, logger: logger)
    }
  }

  /// SQL: the rows of `analytics.scope_days` computed from `analytics.customer_scopes`.
  static let scopeDaysSQL = """
    SELECT currency, channel, 0::int2 AS kind, date_trunc('day', last_at, 'UTC') AS day, count(*)::int8 AS customers
    FROM analytics.customer_scopes GROUP BY 1, 2, 4
    UNION ALL
    SELECT currency, channel, 1::int2, date_trunc('day', first_kept_at, 'UTC'), count(*)::int8
    FROM analytics.customer_scopes GROUP BY 1, 2, 4
    """

  /// How the scope rows per UTC day of their last order (kind 0) and of their customer's first (kind 1)
  /// change when the scopes go from `old` to `new`; without the days that do not change, in key order.
  static func scopeDayChanges(_ old: [ScopeKey: ScopeTimes], _ new: [ScopeKey: ScopeTimes]) -> [(ScopeDay, Int64)] {
    var changes: [ScopeDay: Int64] = [:]
    func count(_ key: ScopeKey, _ times: ScopeTimes, _ sign: Int64) {
      for (kind, at) in [(0, times.last), (1, times.first)] {
        changes[ScopeDay(currency: key.currency, channel: key.channel, kind: kind, day: UTCPeriod.starts(of: at)[0]), default: 0] += sign
      }
    }
    for (key, times) in old where new[key] != times { count(key, times, -1) }
    for (key, times) in new where old[key] != times { count(key, times, 1) }
    return changes.filter { $0.value != 0 }.sorted { $0.key < $1.key }
  }

  /// `orders` less those already stored (a redelivery), each once.
  private func unstored(_ orders: [KeptOrder], on connection: PostgresConnection) async throws -> [KeptOrder] {
    let rows = try await connection.query(
      "SELECT order_id FROM analytics.orders WHERE order_id = ANY(\(orders.map(\.id))::uuid[])", logger: logger)
    var seen: Set<UUID> = []
    for try await id in rows.decode(UUID.self) { seen.insert(id) }
    return orders.filter { seen.insert($0.id).inserted }
  }

  /// The customers among `customers` whose placements `fresh` can be kept from a window of their orders
  /// (they have kept orders and no new one before their first), with their kept scopes and the orders
  /// (not cancelled) in the weeks and months of their new orders as each of `zones` cuts them (a
  /// placement's local month need not be its UTC month: 31 January 20:00 UTC is 1 February in
  /// Kathmandu), with a margin either side longer than the gaps `analytics.sales_hours` tells apart.
  private func placementWindow(
    for fresh: [KeptOrder], of customers: [UUID], zones: [KeptZone], on connection: PostgresConnection
  ) async throws -> PlacementWindow {
    var window = PlacementWindow()
    let placing = Dictionary(grouping: fresh, by: \.customer)
    let candidates = customers.filter { placing[$0] != nil }
    guard !candidates.isEmpty else { return window }
    let rows = try await connection.query(
      """
      SELECT customer_id, currency::text, channel, first_kept_at, last_at, orders, net_minor
      FROM analytics.customer_scopes WHERE customer_id = ANY(\(candidates)::uuid[])
      """, logger: logger)
    var scopes: [UUID: [ScopeKey: ScopeTimes]] = [:]
    for try await (customer, currency, channel, first, last, orders, net) in rows.decode((UUID, String, Int, Date, Date, Int64, Int64).self) {
      scopes[customer, default: [:]][ScopeKey(customer: customer, currency: currency, channel: channel)] =
        ScopeTimes(first: first, last: last, orders: orders, net: net)
    }
    var ids: [UUID] = [], froms: [Date] = [], tos: [Date] = []
    for customer in candidates {
      guard let own = scopes[customer], let first = own.values.first?.first,
        let new = placing[customer], new.allSatisfy({ $0.placed >= first })
      else { continue }
      window.firsts[customer] = first
      window.scopes[customer] = own
      let spans = new.flatMap { order in
        zones.map { zone -> (Date, Date) in
          let starts = zone.starts(of: order.placed)
          return (
            min(starts[1], starts[2]).addingTimeInterval(-Self.windowMargin),
            max(starts[1].addingTimeInterval(7 * 86_400), zone.monthStart(after: starts[2])).addingTimeInterval(Self.windowMargin)
          )
        }
      }
      ids.append(customer)
      froms.append(spans.map(\.0).min()!)
      tos.append(spans.map(\.1).max()!)
    }
    guard !ids.isEmpty else { return window }
    let orders = try await connection.query(
      """
      SELECT o.order_id, o.customer_id, o.placed_at, o.currency::text, o.channel, o.total_minor - o.refunded_minor
      FROM unnest(\(ids)::uuid[], \(froms)::timestamptz[], \(tos)::timestamptz[]) AS w(customer_id, from_at, to_at)
      JOIN analytics.orders o ON o.customer_id = w.customer_id AND o.placed_at >= w.from_at AND o.placed_at < w.to_at
      WHERE NOT o.cancelled
      """, logger: logger)
    for try await (id, customer, placed, currency, channel, net) in orders.decode((UUID, UUID, Date, String, Int, Int64).self) {
      window.orders.append(KeptOrder(id: id, customer: customer, placed: placed, currency: currency, channel: channel, net: net))
    }
    return window
  }

  /// How far past a placement's weeks and months its window reaches: a day, and the hours
  /// `analytics.sales_hours` tells gaps apart over (`SalesHour.far`) beyond it.
  static let windowMargin = TimeInterval(86_400 + SalesHour.far * 3_600)

  /// The orders of `customers` that are not cancelled.
  private func keptOrders(of customers: [UUID], on connection: PostgresConnection) async throws -> [KeptOrder] {
    guard !customers.isEmpty else { return [] }
    let rows = try await connection.query(
      """
      SELECT order_id, customer_id, placed_at, currency::text, channel, total_minor - refunded_minor
      FROM analytics.orders WHERE customer_id = ANY(\(customers)::uuid[]) AND NOT cancelled
      """, logger: logger)
    var kept: [KeptOrder] = []
    for try await (id, customer, placed, currency, channel, net) in rows.decode((UUID, UUID, Date, String, Int, Int64).self) {
      kept.append(KeptOrder(id: id, customer: customer, placed: placed, currency: currency, channel: channel, net: net))
    }
    return kept
  }

  /// `after` − `before`, key by key, without the keys that did not change; in key order (so that
  /// concurrent writers lock rows in the same order).
  private static func difference<Key: Comparable>(_ before: [Key: [Int64]], _ after: [Key: [Int64]]) -> [(Key, [Int64])] {
    var changes: [(Key, [Int64])] = []
    for key in Set(before.keys).union(after.keys) {
      let old = before[key] ?? [], new = after[key] ?? []
      let delta = (0..<max(old.count, new.count)).map { (new.indices.contains($0) ? new[$0] : 0) - (old.indices.contains($0) ? old[$0] : 0) }
      if delta.contains(where: { $0 != 0 }) { changes.append((key, delta)) }
    }
    return changes.sorted { $0.0 < $1.0 }
  }
}

/// Customers whose placements are kept from a window of their orders (`placementWindow`): their first
/// order, their kept scopes, and their orders in the window.
struct PlacementWindow {
  var firsts: [UUID: Date] = [:]
  var scopes: [UUID: [ScopeKey: ScopeTimes]] = [:]
  var orders: [KeptOrder] = []

  /// The window's customers' scopes as kept (`old`), and as kept plus the orders of `placed` that are
  /// not in the window (`new`): a window holds part of their orders, so their scopes do not come from it.
  func replaceScopes(old: inout KeptContributions, new: inout KeptContributions, placed: [KeptOrder]) {
    guard !firsts.isEmpty else { return }
    for key in Set(old.scopes.keys).union(new.scopes.keys) where firsts[key.customer] != nil {
      old.scopes[key] = nil
      new.scopes[key] = nil
    }
    let known = Set(orders.map(\.id))
    for (customer, own) in scopes {
      for (key, times) in own {
        old.scopes[key] = times
        new.scopes[key] = times
      }
      for order in placed where order.customer == customer && !known.contains(order.id) {
        for channel in Set([order.channel, 0]) {
          let key = ScopeKey(customer: customer, currency: order.currency, channel: channel)
          var times = new.scopes[key] ?? ScopeTimes(first: firsts[customer]!, last: order.placed)
          times.last = max(times.last, order.placed)
          times.orders += 1
          times.net += order.net
          new.scopes[key] = times
        }
      }
    }
  }
}

/// An order not cancelled, as the kept aggregates see it.
struct KeptOrder: Sendable {
  let id: UUID
  let customer: UUID
  let placed: Date
  let currency: String
  let channel: Int
  /// Total less refunds.
  let net: Int64

  func of(_ owner: UUID) -> KeptOrder {
    KeptOrder(id: id, customer: owner, placed: placed, currency: currency, channel: channel, net: net)
  }
}

/// A row of a kept aggregate: a sales period (unit, UTC start, currency, channel) or a cohort cell
/// (`cohort`, and the month of activity in `period`).
struct KeptKey: Hashable, Comparable {
  let zone: String
  let unit: String
  let period: Date
  let currency: String
  let channel: Int
  var cohort: Date = .distantPast

  static func < (a: KeptKey, b: KeptKey) -> Bool {
    (a.zone, a.unit, a.currency, a.channel, a.cohort, a.period) < (b.zone, b.unit, b.currency, b.channel, b.cohort, b.period)
  }
}

/// A customer's orders in a currency and a channel (0: every channel).
struct ScopeKey: Hashable, Comparable {
  let customer: UUID
  let currency: String
  let channel: Int

  static func < (a: ScopeKey, b: ScopeKey) -> Bool {
    (a.customer.uuidString, a.currency, a.channel) < (b.customer.uuidString, b.currency, b.channel)
  }
}

/// A row of `analytics.scope_days`: scope rows of a currency and channel whose last order (kind 0) or
/// whose customer's first order (kind 1) is on a UTC day.
struct ScopeDay: Hashable, Comparable {
  let currency: String
  let channel: Int
  let kind: Int
  let day: Date

  static func < (a: ScopeDay, b: ScopeDay) -> Bool {
    (a.currency, a.channel, a.kind, a.day) < (b.currency, b.channel, b.kind, b.day)
  }
}

/// The customer's first order not cancelled (any scope), their last one in the scope, and the scope's
/// orders not cancelled and their net (total less refunds): what RFM scores a customer by.
struct ScopeTimes: Equatable {
  let first: Date
  var last: Date
  var orders: Int64 = 0
  var net: Int64 = 0
}

/// What customers' orders not cancelled contribute to the kept aggregates — the same rows
/// `salesPeriodsSQL`, `cohortCellsSQL` and `customerScopesSQL` compute in SQL for a whole history.
struct KeptContributions {
  /// Per (unit, period, currency, channel): orders, net, customers, new customers.
  var sales: [KeptKey: [Int64]] = [:]
  /// Per (cohort, month): customers.
  var cohorts: [KeptKey: [Int64]] = [:]
  var scopes: [ScopeKey: ScopeTimes] = [:]
  /// Per `SalesHour`: orders, net, then `back` and `ahead` (`SalesHour.gaps` each).
  var hours: [SalesHour: [Int64]] = [:]
  /// Per `FirstHour`: customers.
  var firstHours: [FirstHour: [Int64]] = [:]
  /// Per `CohortHour`: `back` and `ahead` over all of a customer's orders (`SalesHour.monthGaps` each).
  var cohortHours: [CohortHour: [Int64]] = [:]

  /// `UTCPeriod`'s names, in `allCases` order.
  private static let units = UTCPeriod.allCases.map(\.rawValue)

  /// `values` added to `sums`, element by element.
  private static func add(_ values: [Int64], to sums: inout [Int64]) {
    for index in values.indices { sums[index] += values[index] }
  }

  /// Sales periods and cohort cells cut in each of `zones`; the customer scopes, sales hours and first
  /// hours (no zone) once. `firsts`: customers' first orders when `orders` holds only part of theirs.
  /// `placing`: customers who only gain orders placed at these instants (and keep their first), whose
  /// sales periods and cohort cells are computed only where those orders fall — the only ones whose
  /// rows differ between before and after.
  init(_ orders: [KeptOrder], zones: [KeptZone] = [.utc], firsts: [UUID: Date] = [:], placing: [UUID: [Date]] = [:]) {
    for (customer, own) in Dictionary(grouping: orders, by: \.customer) {
      let first = firsts[customer] ?? own.map(\.placed).min()!
      addHours(own, first: first, placing: placing[customer])
      for order in own {
        for channel in Set([order.channel, 0]) {
          let scope = ScopeKey(customer: customer, currency: order.currency, channel: channel)
          var times = scopes[scope] ?? ScopeTimes(first: first, last: order.placed)
          times.last = max(times.last, order.placed)
          times.orders += 1
          times.net += order.net
          scopes[scope] = times
        }
      }
      // With `placing`, only orders that can share a day, week or month with one the customer gains (a
      // month lasts 31 days and a few hours at most).
      let near = placing[customer].map { placed in
        own.filter { order in placed.contains { abs($0.timeIntervalSince(order.placed)) < 35 * 86_400 } }
      } ?? own
      for zone in zones {
        let firstStarts = zone.starts(of: first)
        let placed = placing[customer]?.map { zone.starts(of: $0) }
        // The customer's orders and net per period of each unit (an index into `UTCPeriod.allCases`),
        // currency and channel: each such period counts the customer once, as new when it is the one of
        // their first order. Summed under keys without the zone first, so each `KeptKey` (whose zone
        // name is the costly part to hash) is looked up once per customer.
        var periods: [OwnPeriod: OwnPeriod.Sums] = [:]
        var months: Set<Date> = []
        for order in near {
          let starts = zone.starts(of: order.placed)
          let units = starts.indices.filter { index in placed?.contains { $0[index] == starts[index] } ?? true }
          if units.contains(2) { months.insert(starts[2]) }
          for channel in order.channel == 0 ? [0] : [order.channel, 0] {
            for index in units {
              periods[OwnPeriod(unit: index, period: starts[index], currency: order.currency, channel: channel), default: .init()]
                .add(order.net)
            }
          }
        }
        for (period, sums) in periods {
          let key = KeptKey(
            zone: zone.identifier, unit: Self.units[period.unit], period: period.period, currency: period.currency, channel: period.channel)
          Self.add(
            [sums.orders, sums.net, 1, firstStarts[period.unit] == period.period ? 1 : 0], to: &sales[key, default: [0, 0, 0, 0]])
        }
        for month in months {
          let cell = KeptKey(zone: zone.identifier, unit: "month", period: month, currency: "", channel: 0, cohort: firstStarts[2])
          cohorts[cell, default: [0]][0] += 1
        }
      }
    }
  }
}

extension KeptContributions {
  /// A customer's rows of `analytics.sales_hours` and `analytics.first_hours`, from their orders `own`
  /// (not cancelled) and their first order `first`. With part of their orders (a placement's window, at
  /// least `SalesHour.far` hours either side of the new ones), the rows this computes wrongly near the
  /// window's edges are the same before and after the placement, and cancel. With `placing` (the
  /// instants of the only orders the customer gains), an order's row is computed only when one of those
  /// lies between its neighbours: any other order has the same neighbours, so the same row, before and after.
  fileprivate mutating func addHours(_ own: [KeptOrder], first: Date, placing: [Date]?) {
    let firstHour = SalesHour.hour(of: first)
    let cohort = UTCPeriod.starts(of: first)[2]
    func changes(_ index: Int, of sorted: [KeptOrder]) -> Bool {
      guard let placing else { return true }
      let from = index > 0 ? sorted[index - 1].placed : .distantPast
      let to = index + 1 < sorted.count ? sorted[index + 1].placed : .distantFuture
      return placing.contains { from <= $0 && $0 <= to }
    }
    let all = own.sorted { ($0.placed, $0.id.uuidString) < ($1.placed, $1.id.uuidString) }
    let allHours = all.map { SalesHour.hour(of: $0.placed) }
    let months = SalesHour.monthGaps
    for (index, hour) in allHours.enumerated() where changes(index, of: all) {
      let back = index > 0 ? SalesHour.gap(from: allHours[index - 1], to: hour) : SalesHour.far
      let ahead = index + 1 < allHours.count ? SalesHour.gap(from: hour, to: allHours[index + 1]) : SalesHour.far
      let key = CohortHour(hour: hour, cohort: cohort)
      // Added in place: `back` then `ahead`.
      cohortHours[key, default: Array(repeating: 0, count: 2 * months.count)].withUnsafeMutableBufferPointer { row in
        for (offset, gap) in months.enumerated() {
          if back >= gap { row[offset] += 1 }
          if ahead >= gap { row[months.count + offset] += 1 }
        }
      }
    }
    var byScope: [ScopeKey: [KeptOrder]] = [:]
    for order in all {
      for channel in Set([order.channel, 0]) {
        byScope[ScopeKey(customer: order.customer, currency: order.currency, channel: channel), default: []].append(order)
      }
    }
    let gaps = SalesHour.gaps
    for (scope, sorted) in byScope {
      let at = sorted.map { SalesHour.hour(of: $0.placed) }
      for (index, order) in sorted.enumerated() where changes(index, of: sorted) {
        let back = index > 0 ? SalesHour.gap(from: at[index - 1], to: at[index]) : SalesHour.far
        let ahead = index + 1 < at.count ? SalesHour.gap(from: at[index], to: at[index + 1]) : SalesHour.far
        let key = SalesHour(currency: scope.currency, channel: scope.channel, hour: at[index])
        // Added in place: orders, net, `back`, then `ahead`.
        hours[key, default: Array(repeating: 0, count: 2 + 2 * gaps.count)].withUnsafeMutableBufferPointer { row in
          row[0] += 1
          row[1] += order.net
          for (offset, gap) in gaps.enumerated() {
            if back >= gap { row[2 + offset] += 1 }
            if ahead >= gap { row[2 + gaps.count + offset] += 1 }
          }
        }
      }
      let toFirst = SalesHour.gap(from: firstHour, to: at[0])
      if toFirst < SalesHour.far {
        for (kind, hour) in [(0, at[0]), (1, firstHour)] {
          firstHours[FirstHour(currency: scope.currency, channel: scope.channel, hour: hour, kind: kind, gap: toFirst), default: [0]][0] += 1
        }
      }
    }
  }
}

/// A customer's period of one unit (an index into `UTCPeriod.allCases`), currency and channel in one
/// zone, while `KeptContributions` sums their orders in it.
private struct OwnPeriod: Hashable {
  let unit: Int
  let period: Date
  let currency: String
  let channel: Int

  struct Sums {
    var orders: Int64 = 0, net: Int64 = 0
    mutating func add(_ net: Int64) {
      orders += 1
      self.net += net
    }
  }
}

/// A row of `analytics.sales_hours`: per UTC hour, currency and channel (0: every channel), what a day
/// in a zone that is not kept is derived from (docs/ANALYTICS.md, "Sales"): the hour's orders and net,
/// and for each of `gaps` the hour's orders whose customer's previous order in the scope is at least that
/// many hours back (`back`; hours between UTC hours; no previous order counts as far), and whose next one
/// is at least that many hours on (`ahead`).
struct SalesHour: Hashable, Comparable {
  let currency: String
  let channel: Int
  let hour: Date

  /// The gaps (hours) `back` and `ahead` count orders at, per unit: a period and its base zone's of
  /// the same name ask about gaps from one more than the shorter one's hours (at least 19 for a day, 159
  /// for a week and 664 for a month) to the hours they span together (at most 48, 190 and 760: 15 hours
  /// more than the longest month's, for zones whose clocks are up to 15 hours apart).
  static let units: [(unit: String, gaps: ClosedRange<Int>)] = [("day", 20...48), ("week", 160...190), ("month", 665...760)]
  static let gaps = units.flatMap { Array($0.gaps) }
  static let monthGaps = Array(gaps(of: "month")!.gaps)
  /// The hours a gap is told exactly; a gap of `far` counts as any longer one, or none.
  static let reach = 760
  static let far = reach + 1

  /// `unit`'s gaps, and the (1-based) index in `back` and `ahead` of the first.
  static func gaps(of unit: String) -> (gaps: ClosedRange<Int>, index: Int)? {
    var index = 1
    for (name, gaps) in units {
      if name == unit { return (gaps, index) }
      index += gaps.count
    }
    return nil
  }

  static func hour(of date: Date) -> Date {
    Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 3_600).rounded(.down) * 3_600)
  }

  /// Whole hours from the hour `from` to the hour `to`, `far` past `reach`.
  static func gap(from: Date, to: Date) -> Int {
    min(far, Int((to.timeIntervalSince(from) / 3_600).rounded()))
  }

  static func < (a: SalesHour, b: SalesHour) -> Bool {
    (a.currency, a.channel, a.hour) < (b.currency, b.channel, b.hour)
  }
}

/// A row of `analytics.cohort_hours`: per UTC hour and UTC month of the customers' first order (their
/// cohort in UTC), the hour's orders (any currency or channel) whose customer's previous order is at
/// least each of `SalesHour.monthGaps` hours back (`back`) and whose next one is at least that many
/// hours on (`ahead`): what cohorts in a zone that is not kept are derived from (docs/ANALYTICS.md).
struct CohortHour: Hashable, Comparable {
  let hour: Date
  let cohort: Date

  static func < (a: CohortHour, b: CohortHour) -> Bool { (a.hour, a.cohort) < (b.hour, b.cohort) }
}

/// A row of `analytics.first_hours`: customers whose first order in a currency and channel (0: every
/// channel) is at most `SalesHour.reach` hours (`gap`) after their first order, by the UTC hour of their
/// first in the scope (kind 0) or of their first order (kind 1).
struct FirstHour: Hashable, Comparable {
  let currency: String
  let channel: Int
  let hour: Date
  let kind: Int
  let gap: Int

  static func < (a: FirstHour, b: FirstHour) -> Bool {
    (a.currency, a.channel, a.hour, a.kind, a.gap) < (b.currency, b.channel, b.hour, b.kind, b.gap)
  }
}

/// Days, weeks (from Monday) and months in UTC, as PostgreSQL's `date_trunc(unit, t, 'UTC')` cuts them.
enum UTCPeriod: String, CaseIterable {
  case day, week, month

  /// The starts of the day, week and month of `date`, in `allCases` order. Integer calendar arithmetic
  /// (days since 1970-01-01 to and from a proleptic Gregorian year and month), as this runs for every
  /// order of every customer a change touches.
  static func starts(of date: Date) -> [Date] {
    let day = Int((date.timeIntervalSince1970 / 86_400).rounded(.down))
    // 1970-01-01 was a Thursday: the Monday of its week is 3 days earlier.
    let monday = day - (((day + 3) % 7) + 7) % 7
    return [day, monday, firstOfMonth(day)].map { Date(timeIntervalSince1970: Double($0) * 86_400) }
  }

  func start(of date: Date) -> Date { Self.starts(of: date)[Self.allCases.firstIndex(of: self)!] }

  /// The first day of the month of `day` (days since 1970-01-01), after Howard Hinnant's
  /// `civil_from_days` and `days_from_civil`.
  static func firstOfMonth(_ day: Int) -> Int {
    let z = day + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    // The day of the year (from 1 March) of the first of that month, back to days since 1970-01-01.
    return day - (doy - (153 * mp + 2) / 5)
  }
}
