import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// Analytics SQL: per-customer metrics and the cursor of each consumed feed.
struct AnalyticsStore: Sendable {
  let client: PostgresClient
  let logger: Logger

  private let cursors = FeedCursors(schema: AnalyticsMigrations.schema)

  /// The last sequence applied from `source` (0 before the first event).
  func cursor(source: String) async throws -> Int64 {
    try await cursors.cursor(source: source, client: client, logger: logger)
  }

  /// Applies a batch of events and advances the source's cursor in one transaction; redeliveries change
  /// nothing. Returns how many events took effect.
  @discardableResult
  func apply(_ batch: [Rapport_Events_V1_Event], from source: String) async throws -> Int {
    try await cursors.apply(batch, from: source, client: client, logger: logger) { events, connection in
      // Runs of OrderPlaced take one statement each; other events apply one by one, in order.
      var run: [Rapport_Events_V1_Event] = []
      for event in events {
        if case .orderPlaced? = event.payload {
          run.append(event)
          continue
        }
        try await applyOrders(run, on: connection)
        run = []
        try await applyEffect(event, on: connection)
      }
      try await applyOrders(run, on: connection)
    }
  }

  /// Adds a run of `OrderPlaced` events to the metrics and revenue of their customers (a merged
  /// customer's survivor) with one statement: the events are aggregated per customer (and currency)
  /// first, so each row is written once.
  private func applyOrders(_ events: [Rapport_Events_V1_Event], on connection: PostgresConnection) async throws {
    var customers: [UUID] = [], placed: [Date] = [], currencies: [String] = [], amounts: [Int64] = [], occurred: [Date] = []
    for event in events {
      guard case .orderPlaced(let order)? = event.payload, let id = UUID(uuidString: order.customerID) else { continue }
      customers.append(id)
      placed.append(order.placedAt.date)
      currencies.append(order.total.currency)
      amounts.append(order.total.amountMinor)
      occurred.append(event.occurredAt.date)
    }
    guard !customers.isEmpty else { return }
    try await connection.query(
      """
      WITH e AS (
        SELECT coalesce(a.survivor_id, e.customer_id) AS customer_id, e.placed_at, e.currency, e.amount, e.occurred_at
        FROM unnest(\(customers)::uuid[], \(placed)::timestamptz[], \(currencies)::text[], \(amounts)::int8[],
                    \(occurred)::timestamptz[]) AS e(customer_id, placed_at, currency, amount, occurred_at)
        LEFT JOIN analytics.customer_aliases a ON a.duplicate_id = e.customer_id),
      metrics AS (
        INSERT INTO analytics.customer_metrics (customer_id, order_count, first_order_at, last_order_at, as_of)
        SELECT customer_id, count(*), min(placed_at), max(placed_at), max(occurred_at) FROM e GROUP BY customer_id
        ON CONFLICT (customer_id) DO UPDATE SET
          order_count = customer_metrics.order_count + EXCLUDED.order_count,
          first_order_at = LEAST(customer_metrics.first_order_at, EXCLUDED.first_order_at),
          last_order_at = GREATEST(customer_metrics.last_order_at, EXCLUDED.last_order_at),
          as_of = GREATEST(customer_metrics.as_of, EXCLUDED.as_of))
      INSERT INTO analytics.customer_revenue (customer_id, currency, amount_minor)
      SELECT customer_id, currency, sum(amount) FROM e GROUP BY customer_id, currency
      ON CONFLICT (customer_id, currency) DO UPDATE
      SET amount_minor = customer_revenue.amount_minor + EXCLUDED.amount_minor
      """, logger: logger)
  }

  private func applyEffect(_ event: Rapport_Events_V1_Event, on connection: PostgresConnection) async throws {
    let occurred = event.occurredAt.date
    switch event.payload {
    case .ticketOpened(let ticket)?:
      try await addOpenTickets(1, customer: ticket.customerID, at: occurred, on: connection)
    case .ticketStatusChanged(let change)?:
      // Open means not SOLVED or CLOSED: solving closes one, a reopening opens it again.
      let closed: Set<Rapport_Support_V1_TicketStatus> = [.solved, .closed]
      let delta = (closed.contains(change.from) ? 1 : 0) - (closed.contains(change.to) ? 1 : 0)
      if delta != 0 { try await addOpenTickets(delta, customer: change.customerID, at: occurred, on: connection) }
    case .customerMerged(let merge)?:
      guard let (survivor, duplicate) = try await aliases.record(merge, at: occurred, on: connection, logger: logger)
      else { return }
      try await connection.query(
        """
        INSERT INTO analytics.customer_metrics (customer_id, order_count, first_order_at, last_order_at, open_tickets, as_of)
        SELECT \(survivor), order_count, first_order_at, last_order_at, open_tickets, GREATEST(as_of, \(occurred))
        FROM analytics.customer_metrics WHERE customer_id = \(duplicate)
        ON CONFLICT (customer_id) DO UPDATE SET
          order_count = customer_metrics.order_count + EXCLUDED.order_count,
          first_order_at = LEAST(customer_metrics.first_order_at, EXCLUDED.first_order_at),
          last_order_at = GREATEST(customer_metrics.last_order_at, EXCLUDED.last_order_at),
          open_tickets = customer_metrics.open_tickets + EXCLUDED.open_tickets,
          as_of = GREATEST(customer_metrics.as_of, EXCLUDED.as_of)
        """, logger: logger)
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
    default:
      // CustomerErased: metrics are keyed by an opaque id and hold no personal data; they stay as
      // anonymous aggregates.
      return
    }
  }

  /// Adds `delta` to the open-ticket count of a customer (a merged one's survivor).
  private func addOpenTickets(_ delta: Int, customer raw: String, at occurred: Date, on connection: PostgresConnection)
    async throws
  {
    guard let id = UUID(uuidString: raw) else { return }
    let customer = try await aliases.canonical(id, on: connection, logger: logger)
    try await connection.query(
      """
      INSERT INTO analytics.customer_metrics (customer_id, open_tickets, as_of)
      VALUES (\(customer), \(delta), \(occurred))
      ON CONFLICT (customer_id) DO UPDATE SET
        open_tickets = customer_metrics.open_tickets + EXCLUDED.open_tickets,
        as_of = GREATEST(customer_metrics.as_of, EXCLUDED.as_of)
      """, logger: logger)
  }

  private let aliases = CustomerAliases(schema: AnalyticsMigrations.schema)

  /// A customer's metrics; zeros when no event mentioned the customer yet.
  func metrics(customerID: UUID) async throws -> Rapport_Analytics_V1_CustomerMetrics {
    var metrics = Rapport_Analytics_V1_CustomerMetrics()
    metrics.customerID = customerID.uuidString.lowercased()
    let rows = try await client.query(
      """
      SELECT order_count, first_order_at, last_order_at, open_tickets, as_of
      FROM analytics.customer_metrics WHERE customer_id = \(customerID)
      """, logger: logger)
    for try await (count, first, last, tickets, asOf) in rows.decode((Int64, Date?, Date?, Int64, Date).self) {
      metrics.orderCount = count
      if let first { metrics.firstOrderTime = .init(microsecondsOf: first) }
      if let last { metrics.lastOrderTime = .init(microsecondsOf: last) }
      metrics.openTicketCount = tickets
      metrics.asOf = .init(microsecondsOf: asOf)
    }
    let revenue = try await client.query(
      """
      SELECT currency, amount_minor FROM analytics.customer_revenue
      WHERE customer_id = \(customerID) ORDER BY currency
      """, logger: logger)
    for try await (currency, amount) in revenue.decode((String, Int64).self) {
      metrics.revenue.append(.with {
        $0.currency = currency
        $0.amountMinor = amount
      })
    }
    return metrics
  }
}
