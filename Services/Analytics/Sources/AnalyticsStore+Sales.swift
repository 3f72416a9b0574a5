import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Sales over `analytics.orders` and `analytics.order_lines` (docs/ANALYTICS.md, "Sales"): read when
/// asked, so an order counts as soon as its `OrderPlaced` is applied.
extension AnalyticsStore {
  /// What a sales question is about: placed times in [from, to), one currency, optionally one channel.
  struct SalesRange: Sendable {
    let from: Date, to: Date
    let currency: String
    /// 0: every channel.
    let channel: Int
  }

  /// Orders, net revenue, new and returning customers per period (`unit`: `day`, `week` or `month`,
  /// cut in `timeZone`), every period of the range included, and the range as a whole.
  func salesSummary(_ range: SalesRange, unit: String, timeZone: String) async throws
    -> (periods: [Rapport_Analytics_V1_SalesPeriod], total: Rapport_Analytics_V1_SalesPeriod)
  {
    let rows = try await client.query(
      """
      WITH o AS (
        SELECT order_id, customer_id, total_minor - refunded_minor AS net,
               date_trunc(\(unit), placed_at AT TIME ZONE \(timeZone)) AS period
        FROM analytics.orders
        WHERE NOT cancelled AND currency = \(range.currency) AND placed_at >= \(range.from) AND placed_at < \(range.to)
          AND (\(range.channel) = 0 OR channel = \(range.channel))),
      f AS (
        SELECT customer_id, min(placed_at) AS first_at FROM analytics.orders
        WHERE NOT cancelled AND customer_id IN (SELECT customer_id FROM o) GROUP BY customer_id),
      periods AS (
        SELECT generate_series(
                 date_trunc(\(unit), \(range.from)::timestamptz AT TIME ZONE \(timeZone)),
                 \(range.to)::timestamptz AT TIME ZONE \(timeZone) - interval '1 microsecond',
                 ('1 ' || \(unit))::interval) AS period)
      SELECT p.period AT TIME ZONE \(timeZone), count(o.order_id), coalesce(sum(o.net), 0)::int8,
             count(DISTINCT o.customer_id) FILTER (WHERE date_trunc(\(unit), f.first_at AT TIME ZONE \(timeZone)) = p.period),
             count(DISTINCT o.customer_id) FILTER (WHERE f.first_at < p.period AT TIME ZONE \(timeZone))
      FROM periods p LEFT JOIN o ON o.period = p.period LEFT JOIN f ON f.customer_id = o.customer_id
      GROUP BY p.period ORDER BY p.period
      """, logger: logger)
    var periods: [Rapport_Analytics_V1_SalesPeriod] = []
    for try await (start, orders, net, new, returning) in rows.decode((Date, Int64, Int64, Int64, Int64).self) {
      periods.append(Self.period(start, orders: orders, net: net, new: new, returning: returning, currency: range.currency))
    }
    let totals = try await client.query(
      """
      WITH o AS (
        SELECT customer_id, total_minor - refunded_minor AS net FROM analytics.orders
        WHERE NOT cancelled AND currency = \(range.currency) AND placed_at >= \(range.from) AND placed_at < \(range.to)
          AND (\(range.channel) = 0 OR channel = \(range.channel))),
      f AS (
        SELECT customer_id, min(placed_at) AS first_at FROM analytics.orders
        WHERE NOT cancelled AND customer_id IN (SELECT customer_id FROM o) GROUP BY customer_id)
      SELECT count(*), coalesce(sum(o.net), 0)::int8,
             count(DISTINCT o.customer_id) FILTER (WHERE f.first_at >= \(range.from)),
             count(DISTINCT o.customer_id) FILTER (WHERE f.first_at < \(range.from))
      FROM o JOIN f USING (customer_id)
      """, logger: logger)
    var total = Self.period(range.from, orders: 0, net: 0, new: 0, returning: 0, currency: range.currency)
    for try await (orders, net, new, returning) in totals.decode((Int64, Int64, Int64, Int64).self) {
      total = Self.period(range.from, orders: orders, net: net, new: new, returning: returning, currency: range.currency)
    }
    return (periods, total)
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

  /// The `limit` products with the highest net line revenue in the range.
  /// With `customers`, only their orders (an RFM segment's).
  func topProducts(_ range: SalesRange, limit: Int, customers: [UUID]? = nil) async throws -> [Rapport_Analytics_V1_ProductSales] {
    let rows = try await client.query(
      """
      SELECT l.sku, (array_agg(l.title ORDER BY o.placed_at DESC))[1], sum(l.quantity)::int8, sum(l.net_minor)::int8,
             count(DISTINCT o.order_id)
      FROM analytics.order_lines l JOIN analytics.orders o USING (order_id)
      WHERE NOT o.cancelled AND o.currency = \(range.currency) AND o.placed_at >= \(range.from)
        AND o.placed_at < \(range.to) AND (\(range.channel) = 0 OR o.channel = \(range.channel))
        AND (\(customers)::uuid[] IS NULL OR o.customer_id = ANY(\(customers)::uuid[]))
      GROUP BY l.sku ORDER BY 4 DESC, 3 DESC, 1 LIMIT \(limit)
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

extension AnalyticsStore {
  /// Cohorts by first-order month (cut in `timeZone`) starting in [from, to), with their active
  /// customers per month since, up to the current month.
  func cohorts(from: Date, to: Date, timeZone: String, now: Date = Date()) async throws -> [Rapport_Analytics_V1_Cohort] {
    let rows = try await client.query(
      """
      WITH firsts AS (
        SELECT customer_id, date_trunc('month', min(placed_at) AT TIME ZONE \(timeZone)) AS cohort
        FROM analytics.orders WHERE NOT cancelled GROUP BY customer_id),
      c AS (
        SELECT * FROM firsts
        WHERE cohort >= date_trunc('month', \(from)::timestamptz AT TIME ZONE \(timeZone))
          AND cohort < \(to)::timestamptz AT TIME ZONE \(timeZone)),
      activity AS (
        SELECT DISTINCT o.customer_id, c.cohort,
               (extract(year FROM age(date_trunc('month', o.placed_at AT TIME ZONE \(timeZone)), c.cohort)) * 12
                + extract(month FROM age(date_trunc('month', o.placed_at AT TIME ZONE \(timeZone)), c.cohort)))::int4 AS k
        FROM analytics.orders o JOIN c USING (customer_id) WHERE NOT o.cancelled),
      current AS (SELECT date_trunc('month', \(now)::timestamptz AT TIME ZONE \(timeZone)) AS month)
      SELECT a.cohort AT TIME ZONE \(timeZone), a.k, count(*)::int8,
             (extract(year FROM age((SELECT month FROM current), a.cohort)) * 12
              + extract(month FROM age((SELECT month FROM current), a.cohort)))::int4
      FROM activity a GROUP BY a.cohort, a.k ORDER BY a.cohort, a.k
      """, logger: logger)
    var cohorts: [Rapport_Analytics_V1_Cohort] = []
    for try await (month, k, active, months) in rows.decode((Date, Int32, Int64, Int32).self) {
      if cohorts.last?.month.date != month {
        var cohort = Rapport_Analytics_V1_Cohort()
        cohort.month = .init(microsecondsOf: month)
        cohort.active = Array(repeating: 0, count: Int(max(months, 0)) + 1)
        cohorts.append(cohort)
      }
      guard k >= 0, Int(k) < cohorts[cohorts.count - 1].active.count else { continue }
      cohorts[cohorts.count - 1].active[Int(k)] = active
      if k == 0 { cohorts[cohorts.count - 1].customers = active }
    }
    return cohorts
  }
}
