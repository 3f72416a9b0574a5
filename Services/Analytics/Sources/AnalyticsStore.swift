import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// Analytics SQL: per-customer metrics and the cursor of each consumed feed.
struct AnalyticsStore: Sendable {
  let client: Database
  let logger: Logger
  /// CLV's monthly discount rate (`--monthly-discount-rate`).
  var monthlyDiscountRate = AnalyticsApp.defaultMonthlyDiscountRate
  /// Edges and models, shared by the process's stores (`AnalyticsApp`).
  var scheduled = ScheduledValues()
  /// Products and pairs in memory, shared by the process's stores (`RecommendationModel`).
  var recommendations = RecommendationCache()
  /// Zones reads asked for, shared by the process's stores (`keepLearnedZones`).
  var zoneRequests = ZoneRequests()
  /// The generic-plan pool (`Pools.genericPlans`) for metrics by customer; the main pool when nil (tests).
  var genericPlans: Database? = nil

  private let cursors = FeedCursors(schema: AnalyticsMigrations.schema)

  /// The last sequence applied from `source` and when it advanced (0 and nil before the first event).
  func cursorStatus(source: String) async throws -> (Int64, Date?) {
    let rows = try await client.query(
      "SELECT last_sequence, updated_at FROM analytics.feed_cursors WHERE source = \(source)", logger: logger)
    for try await (sequence, updated) in rows.decode((Int64, Date).self) { return (sequence, updated) }
    return (0, nil)
  }

  /// The last sequence applied from `source` (0 before the first event).
  func cursor(source: String) async throws -> Int64 {
    try await cursors.cursor(source: source, client: client, logger: logger)
  }

  /// Applies a batch of events and advances the source's cursor in one transaction; redeliveries change
  /// nothing. `profiles` (read by `CustomerProfiles` for a customer-feed batch) are stored last, in the
  /// same transaction. Returns how many events took effect.
  @discardableResult
  func apply(
    _ batch: [Rapport_Events_V1_Event], from source: String,
    profiles: [UUID: Rapport_Customer_V1_Customer?] = [:]
  ) async throws -> Int {
    try await cursors.apply(batch, from: source, client: client, logger: logger) { events, connection in
      // A run of order events applies as its placements (one statement), then its cancellations and
      // refunds (one set of statements): each order's placement precedes its cancellation or refund in
      // the feed, and what they leave does not depend on the order of different orders' events. Other
      // events apply one by one, in order.
      var run = OrderRun()
      for event in events {
        switch event.payload {
        case .orderPlaced?: run.placed.append(event)
        case .orderCancelled(let cancelled)?: if let id = UUID(uuidString: cancelled.orderID) { run.cancelled.insert(id) }
        case .orderRefunded(let refund)?:
          // `amount_refunded` is the order's running total: the largest one seen is the order's.
          if let id = UUID(uuidString: refund.orderID) { run.refunded[id] = max(run.refunded[id] ?? 0, refund.amountRefunded.amountMinor) }
        default:
          try await apply(run, on: connection)
          run = OrderRun()
          try await applyEffect(event, on: connection)
        }
      }
      try await apply(run, on: connection)
      try await store(profiles: profiles, on: connection)
    }
  }

  /// Consecutive order events of a batch.
  private struct OrderRun {
    var placed: [Rapport_Events_V1_Event] = []
    var cancelled: Set<UUID> = []
    /// Per order, the largest running refund total.
    var refunded: [UUID: Int64] = [:]
  }

  private func apply(_ run: OrderRun, on connection: PostgresConnection) async throws {
    try await applyOrders(run.placed, on: connection)
    try await applyOutcomes(cancelled: run.cancelled, refunded: run.refunded, on: connection)
  }

  /// Adds a run of `OrderPlaced` events to the metrics and revenue of their customers (a merged
  /// customer's survivor) with one statement: the events are aggregated per customer (and currency)
  /// first, so each row is written once.
  private func applyOrders(_ events: [Rapport_Events_V1_Event], on connection: PostgresConnection) async throws {
    var customers: [UUID] = [], placed: [Date] = [], currencies: [String] = [], amounts: [Int64] = [], occurred: [Date] = []
    var orders: [UUID] = [], channels: [Int] = []
    var lines = OrderLines()
    for event in events {
      guard case .orderPlaced(let order)? = event.payload, let id = UUID(uuidString: order.customerID),
        let orderID = UUID(uuidString: order.orderID)
      else { continue }
      orders.append(orderID)
      channels.append(order.channel.rawValue)
      lines.append(order.lines, of: orderID)
      customers.append(id)
      placed.append(order.placedAt.date)
      currencies.append(order.total.currency)
      amounts.append(order.total.amountMinor)
      occurred.append(event.occurredAt.date)
    }
    guard !customers.isEmpty else { return }
    let incoming = orders.indices.map {
      KeptOrder(
        id: orders[$0], customer: customers[$0], placed: placed[$0], currency: currencies[$0], channel: channels[$0],
        net: amounts[$0])
    }
    try await keepingAggregates(of: Array(Set(customers)), placing: incoming, on: connection) {
      try await connection.query(
        """
        WITH e AS (
          SELECT e.order_id, coalesce(a.survivor_id, e.customer_id) AS customer_id, e.placed_at, e.currency, e.amount,
                 e.occurred_at, e.channel
          FROM unnest(\(orders)::uuid[], \(customers)::uuid[], \(placed)::timestamptz[], \(currencies)::text[],
                      \(amounts)::int8[], \(occurred)::timestamptz[], \(channels)::int4[])
               AS e(order_id, customer_id, placed_at, currency, amount, occurred_at, channel)
          LEFT JOIN analytics.customer_aliases a ON a.duplicate_id = e.customer_id),
        facts AS (
          INSERT INTO analytics.orders (order_id, customer_id, placed_at, currency, total_minor, channel)
          SELECT order_id, customer_id, placed_at, currency, amount, channel FROM e
          ON CONFLICT (order_id) DO NOTHING
          RETURNING order_id),
        pending AS (INSERT INTO analytics.purchases_pending (order_id) SELECT order_id FROM facts),
        lines AS (
          INSERT INTO analytics.order_lines (order_id, line, sku, title, quantity, net_minor)
          SELECT l.order_id, l.line, l.sku, l.title, l.quantity, l.net
          FROM unnest(\(lines.orders)::uuid[], \(lines.numbers)::int4[], \(lines.skus)::text[], \(lines.titles)::text[],
                      \(lines.quantities)::int8[], \(lines.nets)::int8[]) AS l(order_id, line, sku, title, quantity, net)
          JOIN facts f ON f.order_id = l.order_id
          RETURNING order_id, sku, quantity, net_minor),
        products AS (
          INSERT INTO analytics.product_sales (grain, period, currency, channel, sku, quantity, net_minor, orders)
          \(unescaped: Self.productSalesSQL(
            from: "(SELECT l.order_id, e.placed_at, e.currency, e.channel, l.sku, l.quantity, l.net_minor FROM lines l JOIN e USING (order_id))"))
          ON CONFLICT (grain, currency, period, channel, sku) DO UPDATE SET
            quantity = product_sales.quantity + EXCLUDED.quantity, net_minor = product_sales.net_minor + EXCLUDED.net_minor,
            orders = product_sales.orders + EXCLUDED.orders),
        metrics AS (
          INSERT INTO analytics.customer_metrics (customer_id, order_count, first_order_at, last_order_at, as_of, first_kept_order_at)
          SELECT customer_id, count(*), min(placed_at), max(placed_at), max(occurred_at), min(placed_at) FROM e GROUP BY customer_id
          ON CONFLICT (customer_id) DO UPDATE SET
            order_count = customer_metrics.order_count + EXCLUDED.order_count,
            first_order_at = LEAST(customer_metrics.first_order_at, EXCLUDED.first_order_at),
            first_kept_order_at = LEAST(customer_metrics.first_kept_order_at, EXCLUDED.first_kept_order_at),
            last_order_at = GREATEST(customer_metrics.last_order_at, EXCLUDED.last_order_at),
            as_of = GREATEST(customer_metrics.as_of, EXCLUDED.as_of))
        INSERT INTO analytics.customer_revenue (customer_id, currency, amount_minor)
        SELECT customer_id, currency, sum(amount) FROM e GROUP BY customer_id, currency
        ON CONFLICT (customer_id, currency) DO UPDATE
        SET amount_minor = customer_revenue.amount_minor + EXCLUDED.amount_minor
        """, logger: logger)
    }
  }

  /// Order lines as column arrays, to bind into one `unnest(…)`.
  struct OrderLines {
    var orders: [UUID] = [], numbers: [Int] = [], skus: [String] = [], titles: [String] = []
    var quantities: [Int64] = [], nets: [Int64] = []

    /// Net of a line: quantity × unit price − its discount, before tax.
    mutating func append(_ lines: [Rapport_Order_V1_OrderLine], of order: UUID) {
      for (number, line) in lines.enumerated() {
        orders.append(order)
        numbers.append(number + 1)
        skus.append(line.sku)
        titles.append(line.title)
        quantities.append(line.quantity)
        nets.append(line.quantity * line.unitPriceMinor - line.discountMinor)
      }
    }
  }

  private func applyEffect(_ event: Rapport_Events_V1_Event, on connection: PostgresConnection) async throws {
    let occurred = event.occurredAt.date
    switch event.payload {
    case .ticketOpened(let ticket)?:
      try await addSupport(.init(open: 1, opened: 1), customer: ticket.customerID, at: occurred, on: connection)
    case .ticketStatusChanged(let change)?:
      // Open means not SOLVED or CLOSED: solving closes one, a reopening opens it again.
      let closed: Set<Rapport_Support_V1_TicketStatus> = [.solved, .closed]
      let delta = (closed.contains(change.from) ? 1 : 0) - (closed.contains(change.to) ? 1 : 0)
      if delta != 0 { try await addSupport(.init(open: delta), customer: change.customerID, at: occurred, on: connection) }
    case .slaBreached(let breach)?:
      try await addSupport(.init(breaches: 1), customer: breach.customerID, at: occurred, on: connection)
    case .ticketRated(let rating)?:
      try await addSupport(
        .init(ratingSum: Int(rating.rating), ratings: 1), customer: rating.customerID, at: occurred, on: connection)
    case .customerMerged(let merge)?:
      guard let (survivor, duplicate) = try await aliases.record(merge, at: occurred, on: connection, logger: logger)
      else { return }
      // The duplicate's purchases so far count as theirs, as if they had been added at once: added
      // before their orders move to the survivor.
      try await addPendingPurchases(on: connection)
      try await connection.query(
        """
        INSERT INTO analytics.customer_metrics (
          customer_id, order_count, first_order_at, last_order_at, open_tickets, tickets_opened, sla_breaches,
          rating_sum, rating_count, as_of, first_kept_order_at)
        SELECT \(survivor), order_count, first_order_at, last_order_at, open_tickets, tickets_opened, sla_breaches,
               rating_sum, rating_count, GREATEST(as_of, \(occurred)), first_kept_order_at
        FROM analytics.customer_metrics WHERE customer_id = \(duplicate)
        ON CONFLICT (customer_id) DO UPDATE SET
          order_count = customer_metrics.order_count + EXCLUDED.order_count,
          first_order_at = LEAST(customer_metrics.first_order_at, EXCLUDED.first_order_at),
          first_kept_order_at = LEAST(customer_metrics.first_kept_order_at, EXCLUDED.first_kept_order_at),
          last_order_at = GREATEST(customer_metrics.last_order_at, EXCLUDED.last_order_at),
          open_tickets = customer_metrics.open_tickets + EXCLUDED.open_tickets,
          tickets_opened = customer_metrics.tickets_opened + EXCLUDED.tickets_opened,
          sla_breaches = customer_metrics.sla_breaches + EXCLUDED.sla_breaches,
          rating_sum = customer_metrics.rating_sum + EXCLUDED.rating_sum,
          rating_count = customer_metrics.rating_count + EXCLUDED.rating_count,
          as_of = GREATEST(customer_metrics.as_of, EXCLUDED.as_of)
        """, logger: logger)
      try await keepingAggregates(of: [survivor, duplicate], on: connection) {
        try await connection.query(
          "UPDATE analytics.orders SET customer_id = \(survivor) WHERE customer_id = \(duplicate)", logger: logger)
      }
      try await mergeAffinities(survivor: survivor, duplicate: duplicate, on: connection)
      try await connection.query(
        """
        INSERT INTO analytics.customer_revenue (customer_id, currency, amount_minor)
        SELECT \(survivor), currency, amount_minor FROM analytics.customer_revenue WHERE customer_id = \(duplicate)
        ON CONFLICT (customer_id, currency) DO UPDATE
        SET amount_minor = customer_revenue.amount_minor + EXCLUDED.amount_minor
        """, logger: logger)
      try await connection.query(
        "DELETE FROM analytics.customer_revenue WHERE customer_id = \(duplicate)", logger: logger)
      try await connection.query(
        "DELETE FROM analytics.customer_metrics WHERE customer_id = \(duplicate)", logger: logger)
      // The survivor keeps its own consent decisions; the duplicate's fill in the purposes it lacks.
      try await connection.query(
        """
        INSERT INTO analytics.customer_consent (customer_id, purpose, channel, granted, decided_at)
        SELECT \(survivor), purpose, channel, granted, decided_at FROM analytics.customer_consent
        WHERE customer_id = \(duplicate) ON CONFLICT DO NOTHING
        """, logger: logger)
      try await connection.query(
        "DELETE FROM analytics.customer_consent WHERE customer_id = \(duplicate)", logger: logger)
      // The survivor's profile is read again (CustomerProfiles.changed); the duplicate's goes.
      try await connection.query(
        "DELETE FROM analytics.customer_profiles WHERE customer_id = \(duplicate)", logger: logger)
    case .consentChanged(let consent)?:
      guard let raw = UUID(uuidString: consent.customerID) else { return }
      let customer = try await aliases.canonical(raw, on: connection, logger: logger)
      try await connection.query(
        """
        INSERT INTO analytics.customer_consent (customer_id, purpose, channel, granted, decided_at)
        VALUES (\(customer), \(consent.purpose.rawValue), \(consent.channel.rawValue), \(consent.granted), \(occurred))
        ON CONFLICT (customer_id, purpose, channel) DO UPDATE SET granted = EXCLUDED.granted, decided_at = EXCLUDED.decided_at
        WHERE customer_consent.decided_at <= EXCLUDED.decided_at
        """, logger: logger)
    case .customerErased(let erased)?:
      // Metrics are keyed by an opaque id and hold no personal data; they stay as anonymous aggregates.
      // The customer's consent, tags and attributes go, and rule segments (marketing) no longer count them.
      guard let customer = UUID(uuidString: erased.customerID) else { return }
      try await connection.query(
        """
        INSERT INTO analytics.erased_customers (customer_id, erased_at) VALUES (\(customer), \(occurred))
        ON CONFLICT DO NOTHING
        """, logger: logger)
      try await connection.query("DELETE FROM analytics.customer_consent WHERE customer_id = \(customer)", logger: logger)
      try await connection.query("DELETE FROM analytics.customer_profiles WHERE customer_id = \(customer)", logger: logger)
    default:
      return
    }
  }

  /// Marks the orders of `cancelled` cancelled (each once) and raises the refunded totals of those of
  /// `refunded`; orders not applied are skipped. The kept aggregates of their customers move by the
  /// change, the customers' first orders not cancelled are found again, and the cancelled orders' lines
  /// leave the product rollups.
  private func applyOutcomes(cancelled: Set<UUID>, refunded: [UUID: Int64], on connection: PostgresConnection) async throws {
    let ids = cancelled.union(refunded.keys).sorted { $0.uuidString < $1.uuidString }
    guard !ids.isEmpty else { return }
    // Locked in id order. A writer that takes some of them in another order (a scoring pass marking
    // orders) can deadlock with this; the batch then runs again (`FeedCursors.apply`).
    let rows = try await connection.query(
      """
      SELECT order_id, customer_id, cancelled FROM analytics.orders WHERE order_id = ANY(\(ids)::uuid[])
      ORDER BY order_id FOR UPDATE
      """, logger: logger)
    var customers: Set<UUID> = [], cancelling: [UUID] = [], losing: Set<UUID> = [], refunds: [(UUID, Int64)] = []
    for try await (order, customer, wasCancelled) in rows.decode((UUID, UUID, Bool).self) {
      if cancelled.contains(order) && !wasCancelled {
        cancelling.append(order)
        losing.insert(customer)
        customers.insert(customer)
      }
      if let amount = refunded[order] {
        refunds.append((order, amount))
        customers.insert(customer)
      }
    }
    guard !customers.isEmpty else { return }
    try await keepingAggregates(of: customers.sorted { $0.uuidString < $1.uuidString }, on: connection) {
      if !cancelling.isEmpty {
        try await connection.query(
          "UPDATE analytics.orders SET cancelled = true WHERE order_id = ANY(\(cancelling)::uuid[])", logger: logger)
      }
      if !refunds.isEmpty {
        try await connection.query(
          """
          UPDATE analytics.orders o SET refunded_minor = GREATEST(o.refunded_minor, r.amount)
          FROM unnest(\(refunds.map(\.0))::uuid[], \(refunds.map(\.1))::int8[]) AS r(order_id, amount)
          WHERE o.order_id = r.order_id
          """, logger: logger)
      }
    }
    guard !cancelling.isEmpty else { return }
    try await connection.query(
      """
      UPDATE analytics.customer_metrics m SET first_kept_order_at = (
        SELECT min(placed_at) FROM analytics.orders o WHERE o.customer_id = m.customer_id AND NOT o.cancelled)
      WHERE m.customer_id = ANY(\(losing.sorted { $0.uuidString < $1.uuidString })::uuid[])
      """, logger: logger)
    // The orders' lines as rollup rows (`gone`), taken out; the rows that fall to zero are deleted by a
    // second statement: one statement cannot delete the rows it updates (the delete would be skipped).
    let gone = Self.productSalesSQL(from: "lost")
    try await connection.query(
      """
      WITH lost AS (
        SELECT o.order_id, o.placed_at, o.currency, o.channel, l.sku, l.quantity, l.net_minor
        FROM analytics.order_lines l JOIN analytics.orders o USING (order_id) WHERE o.order_id = ANY(\(cancelling)::uuid[])),
      gone AS (\(unescaped: gone))
      UPDATE analytics.product_sales p SET quantity = p.quantity - g.quantity, net_minor = p.net_minor - g.net_minor,
        orders = p.orders - g.orders
      FROM gone g
      WHERE (p.grain, p.period, p.currency, p.channel, p.sku) = (g.grain, g.period, g.currency, g.channel, g.sku)
      """, logger: logger)
    try await connection.query(
      """
      WITH lost AS (
        SELECT o.order_id, o.placed_at, o.currency, o.channel, l.sku, l.quantity, l.net_minor
        FROM analytics.order_lines l JOIN analytics.orders o USING (order_id) WHERE o.order_id = ANY(\(cancelling)::uuid[])),
      gone AS (\(unescaped: gone))
      DELETE FROM analytics.product_sales p USING gone g
      WHERE p.orders = 0 AND (p.grain, p.period, p.currency, p.channel, p.sku) = (g.grain, g.period, g.currency, g.channel, g.sku)
      """, logger: logger)
  }

  /// Changes to a customer's support counters.
  struct SupportDelta {
    var open = 0, opened = 0, breaches = 0, ratingSum = 0, ratings = 0
  }

  /// Adds `delta` to the support counters of a customer (a merged one's survivor).
  private func addSupport(_ delta: SupportDelta, customer raw: String, at occurred: Date, on connection: PostgresConnection)
    async throws
  {
    guard let id = UUID(uuidString: raw) else { return }
    let customer = try await aliases.canonical(id, on: connection, logger: logger)
    try await connection.query(
      """
      INSERT INTO analytics.customer_metrics (
        customer_id, open_tickets, tickets_opened, sla_breaches, rating_sum, rating_count, as_of)
      VALUES (\(customer), \(delta.open), \(delta.opened), \(delta.breaches), \(delta.ratingSum), \(delta.ratings),
              \(occurred))
      ON CONFLICT (customer_id) DO UPDATE SET
        open_tickets = customer_metrics.open_tickets + EXCLUDED.open_tickets,
        tickets_opened = customer_metrics.tickets_opened + EXCLUDED.tickets_opened,
        sla_breaches = customer_metrics.sla_breaches + EXCLUDED.sla_breaches,
        rating_sum = customer_metrics.rating_sum + EXCLUDED.rating_sum,
        rating_count = customer_metrics.rating_count + EXCLUDED.rating_count,
        as_of = GREATEST(customer_metrics.as_of, EXCLUDED.as_of)
      """, logger: logger)
  }

  private let aliases = CustomerAliases(schema: AnalyticsMigrations.schema)

  /// A customer's metrics; zeros when no event mentioned the customer yet (`metrics(customerIDs:)`).
  func metrics(customerID: UUID, withRecommendations: Bool = true) async throws -> Rapport_Analytics_V1_CustomerMetrics {
    guard let metrics = try await metrics(customerIDs: [customerID], withRecommendations: withRecommendations)[customerID] else {
      throw RPCFailure.internal("metrics are missing")
    }
    return metrics
  }

  /// Several customers' metrics, every id asked with an entry. One statement reads the counters, the spend
  /// per currency, the segments, the revenue and the recommendations of all of them (`metricsQuery`).
  func metrics(
    customerIDs: [UUID], withRecommendations: Bool = true
  ) async throws -> [UUID: Rapport_Analytics_V1_CustomerMetrics] {
    if withRecommendations { try await addingPendingPurchases() }
    let rows = try await (genericPlans ?? client).prepared(
      MetricsText.self, Self.metricsQuery(customerIDs, withRecommendations: withRecommendations), logger: logger)
    // `bought` is nil for a customer given no recommendations (not asked for, or no order yet).
    var found: [UUID: (metrics: Rapport_Analytics_V1_CustomerMetrics, spend: [Spend], bought: [(sku: String, affinity: Double)]?)] = [:]
    var version: Int64 = 0
    for try await row in rows {
      var r = RowReader(row)
      let id = try r.next(UUID.self)
      let asOf = try r.next(Date?.self)
      let counters = (
        count: try r.next(Int64?.self) ?? 0, first: try r.next(Date?.self), last: try r.next(Date?.self),
        tickets: try r.next(Int64?.self) ?? 0, opened: try r.next(Int64?.self) ?? 0,
        breaches: try r.next(Int64?.self) ?? 0, ratingSum: try r.next(Int64?.self) ?? 0,
        ratings: try r.next(Int64?.self) ?? 0)
      let segments = try r.next([String]?.self) ?? []
      let revenueCurrencies = try r.next([String]?.self) ?? []
      let revenueAmounts = try r.next([Int64]?.self) ?? []
      let skus = try r.next([String]?.self) ?? [], affinities = try r.next([Double]?.self) ?? []
      version = try r.next(Int64.self)
      var spend = found[id]?.spend ?? []
      if let currency = try r.next(String?.self) {
        spend.append(Spend(
          currency: currency, orders: try r.next(), cancelled: try r.next(), net: try r.next(),
          refunded: try r.next(), last: try r.next(), first: try r.next()))
      }
      if var known = found[id] {
        known.spend = spend
        found[id] = known
        continue
      }
      var metrics = Rapport_Analytics_V1_CustomerMetrics()
      metrics.customerID = id.uuidString.lowercased()
      if let asOf {
        metrics.orderCount = counters.count
        if let time = counters.first { metrics.firstOrderTime = .init(microsecondsOf: time) }
        if let time = counters.last { metrics.lastOrderTime = .init(microsecondsOf: time) }
        metrics.openTicketCount = counters.tickets
        metrics.asOf = .init(microsecondsOf: asOf)
        metrics.ticketsOpened = counters.opened
        metrics.slaBreaches = counters.breaches
        metrics.ratingCount = counters.ratings
        metrics.averageRating = counters.ratings > 0 ? Double(counters.ratingSum) / Double(counters.ratings) : 0
      }
      metrics.segmentIds = segments
      guard revenueAmounts.count == revenueCurrencies.count else { throw RPCFailure.internal("revenue arrays differ in length") }
      metrics.revenue = zip(revenueCurrencies, revenueAmounts).map { .money($1, $0) }
      guard affinities.count == skus.count else { throw RPCFailure.internal("recommendation arrays differ in length") }
      let recommended = withRecommendations && asOf != nil && counters.count > 0
      found[id] = (metrics, spend, recommended ? zip(skus, affinities).map { (sku: $0, affinity: $1) } : nil)
    }
    // Three recommendations for each customer with orders, from the model at the statement's version.
    let model = found.values.contains { $0.bought != nil } ? try await recommendationModel(atLeast: version) : nil
    let predictions = try await predictions(spend: found.mapValues(\.spend))
    var answers: [UUID: Rapport_Analytics_V1_CustomerMetrics] = [:]
    for id in customerIDs where answers[id] == nil {
      var metrics = found[id]?.metrics ?? .with { $0.customerID = id.uuidString.lowercased() }
      let spend = found[id]?.spend ?? []
      if let model, let bought = found[id]?.bought { metrics.recommendations = model.recommend(bought, limit: 3) }
      metrics.netRevenue = spend.map { .money($0.net, $0.currency) }
      metrics.refunded = spend.map { .money($0.refunded, $0.currency) }
      metrics.averageOrderValue = spend.filter { $0.orders > 0 }.map {
        .money(Self.roundedDivision($0.net, $0.orders), $0.currency)
      }
      metrics.cancelledOrderCount = spend.reduce(0) { $0 + $1.cancelled }
      if let rfm = try await rfm(spend) { metrics.rfm = rfm }
      if let prediction = predictions[id] { metrics.prediction = prediction }
      answers[id] = metrics
    }
    return answers
  }

  /// One row per currency the customer ordered in (one row with no currency when none), each with the
  /// counters (NULL when no event mentioned the customer), the segment ids, the revenue per currency and
  /// the products bought with their affinities and the recommendation tables' version (no products for
  /// a customer without orders: recommendations start with the first).
  static func metricsQuery(_ customerIDs: [UUID], withRecommendations: Bool) -> PostgresQuery {
    """
    SELECT k.id, m.as_of, m.order_count, m.first_order_at, m.last_order_at, m.open_tickets, m.tickets_opened,
      m.sla_breaches, m.rating_sum, m.rating_count,
      (SELECT array_agg(segment_id ORDER BY segment_id) FROM analytics.segment_members WHERE customer_id = k.id),
      (SELECT array_agg(currency::text ORDER BY currency) FROM analytics.customer_revenue WHERE customer_id = k.id),
      (SELECT array_agg(amount_minor ORDER BY currency) FROM analytics.customer_revenue WHERE customer_id = k.id),
      rec.*, (SELECT version FROM analytics.recommendation_version), s.*
    FROM unnest(\(customerIDs)::uuid[]) k(id)
    LEFT JOIN analytics.customer_metrics m ON m.customer_id = k.id
    CROSS JOIN LATERAL (
      SELECT array_agg(sku ORDER BY sku), array_agg(affinity ORDER BY sku) FROM analytics.customer_items
      WHERE \(withRecommendations)::bool AND m.order_count > 0 AND customer_id = k.id) rec
    LEFT JOIN LATERAL (
      SELECT currency::text, \(unescaped: spendColumns) FROM analytics.orders WHERE customer_id = k.id GROUP BY currency
    ) s ON true
    ORDER BY k.id, s.currency
    """
  }

  enum MetricsText: StatementText { static let sql = AnalyticsStore.metricsQuery([], withRecommendations: true).sql }

}
