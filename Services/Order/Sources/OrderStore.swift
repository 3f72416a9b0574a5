import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// Order SQL; nothing else in the service touches the database.
struct OrderStore: Sendable {
  /// What placing an order came to.
  enum Placement: Sendable {
    case created(OrderRecord)
    case replayed(OrderRecord)
    /// The key was used on this channel for a different request.
    case keyConflict
    /// The customer is not known here as ACTIVE (never confirmed, merged or erased): confirm and retry.
    case customerNotActive
    case cartMissing
    case cartConverted(orderID: UUID)
  }

  let client: Database
  let logger: Logger
  /// The generic-plan pool (`Pools.genericPlans`) for PlaceOrder's statement and the overviews by customer;
  /// the main pool when nil (tests).
  var genericPlans: Database? = nil
  let outbox = OrderMigrations.outbox

  /// The order an earlier request with this key created, and whether `requestBytes` is that request.
  func existing(channel: Int, key: String, requestBytes: [UInt8]) async throws -> Placement? {
    let rows = try await client.query(
      """
      SELECT id, request_hash = sha256(\(requestBytes.bytea))
      FROM orders.orders WHERE channel = \(channel) AND idempotency_key = \(key)
      """, logger: logger)
    for try await (id, same) in rows.decode((UUID, Bool).self) {
      guard same else { return .keyConflict }
      guard let order = try await get(id: id, full: true) else { return nil }
      return .replayed(order)
    }
    return nil
  }

  /// Places `order` (with its lines, first history entry and events) in ONE statement, which PostgreSQL
  /// runs as one transaction. The outbox lock is taken inside it, so it is held only while the backend
  /// finishes the statement and commits — never across a round trip to this process. The insert happens
  /// only if the customer is ACTIVE in `customer_refs` (share-locked, so a concurrent merge or erase
  /// waits for it or is seen by it) and, with a cart, if the cart exists unconverted (locked and marked
  /// converted in the same statement).
  /// The first history entry is `order.history[0]`.
  /// An imported order (ImportOrders) arrives in its later state — captured and refunded amounts,
  /// shipment, delivery — and that state is inserted by the same statement (a placed order has none yet).
  func place(
    _ order: OrderRecord, requestBytes: [UInt8], events: [Rapport_Events_V1_Event]
  ) async throws -> Placement {
    let query = Self.placeQuery(order, requestBytes: requestBytes, events: try Outbox.Rows(events), outbox: outbox)
    assert(query.sql == PlaceOrderStatement.sql, "PlaceOrder's SQL must not depend on the values")
    var inserted: Int64 = 0, active: Int64 = 0, cartFree: Int64 = 0
    let result = try await (genericPlans ?? client).execute(PlaceOrderStatement(bindings: query.binds), logger: logger)
    for (o, r, c, _) in result {
      (inserted, active, cartFree) = (o, r, c)
    }
    if inserted == 1 { return .created(order) }
    if let earlier = try await existing(channel: order.channel, key: order.idempotencyKey, requestBytes: requestBytes) {
      return earlier
    }
    if active == 0 { return .customerNotActive }
    if cartFree == 0, let cartID = order.cartID {
      let cart = try await self.cart(channel: order.channel, id: cartID)
      if let converted = cart?.orderID { return .cartConverted(orderID: converted) }
      return .cartMissing
    }
    throw RPCFailure.unavailable("the order could not be stored; retry")
  }

  /// PlaceOrder's statement. Every parameter carries an explicit cast matching its Swift type, so the
  /// text is the same for every order (it is prepared once per connection: see `PlaceOrderStatement`)
  /// and the server infers exactly the types postgres-nio encodes.
  static func placeQuery(_ order: OrderRecord, requestBytes: [UInt8], events rows: Outbox.Rows, outbox: Outbox) -> PostgresQuery {
    let placed = order.history.first ?? .init()
    let lines = order.lines
    let terms = order.terms
    let cart = order.cartID ?? ""
    return """
      WITH ref AS (
        SELECT customer_id FROM orders.customer_refs
        WHERE customer_id = \(order.customerID)::uuid AND state = \(code: CustomerRef.State.active) FOR SHARE),
      cart AS (
        SELECT abandoned_at FROM orders.carts
        WHERE channel = \(order.channel)::int8 AND cart_id = \(cart)::text AND order_id IS NULL FOR UPDATE),
      ok AS (SELECT 1 FROM ref WHERE \(cart)::text = '' OR EXISTS (SELECT 1 FROM cart)),
      o AS (
        INSERT INTO orders.orders (
          id, customer_id, channel, idempotency_key, request_hash, status, currency, total_minor, created_at,
          updated_at, subtotal_minor, discount_minor, tax_minor, shipping_minor, channel_order_reference,
          shipping_address, billing_address, company_id, purchase_order_number, payment_terms_net_days,
          payment_due_at, cart_id, paid_minor, refunded_minor, carrier, tracking_number, shipped_at, delivered_at)
        SELECT \(order.id)::uuid, \(order.customerID)::uuid, \(order.channel)::int8, \(order.idempotencyKey)::text,
          sha256(\(requestBytes.bytea)::bytea), \(order.status.rawValue)::int8, \(order.currency)::text,
          \(order.totalMinor)::int8, \(order.createdAt)::timestamptz, \(order.createdAt)::timestamptz,
          \(order.amounts.subtotal)::int8, \(order.amounts.discount)::int8, \(order.amounts.tax)::int8,
          \(order.amounts.shipping)::int8, \(order.channelOrderReference)::text,
          \(order.shippingAddress?.stored)::text::jsonb, \(order.billingAddress?.stored)::text::jsonb,
          \(terms?.companyID)::uuid, \(terms?.purchaseOrderNumber)::text, \(terms?.netDays)::int8,
          \(terms?.dueAt)::timestamptz, NULLIF(\(cart)::text, ''), \(order.paidMinor)::int8,
          \(order.refundedMinor)::int8, \(order.carrier)::text, \(order.trackingNumber)::text,
          \(order.shippedAt)::timestamptz, \(order.deliveredAt)::timestamptz
        FROM ok
        ON CONFLICT (channel, idempotency_key) DO NOTHING
        RETURNING id),
      l AS (
        INSERT INTO orders.order_lines (order_id, line_no, sku, title, quantity, unit_price_minor, discount_minor, tax_minor)
        SELECT o.id, l.n, l.sku, l.title, l.quantity, l.price, l.discount, l.tax
        FROM o, unnest(\(lines.map(\.sku))::text[], \(lines.map(\.title))::text[], \(lines.map(\.quantity))::int8[],
                       \(lines.map(\.unitPriceMinor))::int8[], \(lines.map(\.discountMinor))::int8[],
                       \(lines.map(\.taxMinor))::int8[])
                WITH ORDINALITY AS l(sku, title, quantity, price, discount, tax, n)),
      h AS (
        INSERT INTO orders.status_history (order_id, from_status, to_status, changed_at, actor, reason)
        SELECT o.id, 0, \(order.status.rawValue)::int8, \(order.createdAt)::timestamptz, \(placed.actor)::text,
          \(placed.reason)::text FROM o),
      c AS (
        UPDATE orders.carts SET order_id = o.id,
          recovered_at = CASE WHEN carts.abandoned_at IS NULL THEN NULL ELSE \(order.createdAt)::timestamptz END
        FROM o WHERE carts.channel = \(order.channel)::int8 AND carts.cart_id = \(cart)::text
        RETURNING carts.abandoned_at IS NOT NULL AS recovered),
      lock AS (SELECT pg_advisory_xact_lock(\(outbox.lockKey)::int8) FROM o),
      e AS (
        \(insert: outbox, rows, after: "lock", where: "e.type <> 'CartRecovered' OR EXISTS (SELECT 1 FROM c WHERE c.recovered)")
        RETURNING pg_notify(\(outbox.channel)::text, ''))
      SELECT (SELECT count(*) FROM o), (SELECT count(*) FROM ref), (SELECT count(*) FROM cart), (SELECT count(*) FROM e)
      """
  }

  /// One order; with `full`, its history, payments and refunds too.
  func get(id: UUID, full: Bool = false) async throws -> OrderRecord? {
    let rows = try await client.prepared(GetText.self, Self.getQuery(id), logger: logger)
    var found: OrderRecord?
    for try await row in rows { found = try OrderRecord(rowWithLines: row) }
    guard var order = found else { return nil }
    if full { try await loadActivity(&order) }
    return order
  }

  static func getQuery(_ id: UUID) -> PostgresQuery {
    """
    SELECT \(unescaped: OrderRecord.columnsWithLines) FROM orders.orders \(unescaped: OrderRecord.withLines)
    WHERE id = \(id)::uuid
    """
  }

  enum GetText: StatementText { static let sql = OrderStore.getQuery(UUID()).sql }

  /// Filters of `list`.
  struct Filter: Sendable {
    var customerID: UUID?
    var statuses: [Int] = []
    var channel: Int = 0
    var createdAfter: Date?
    var createdBefore: Date?
  }

  /// Orders newest first, after the page token's position (a prepared statement: `ListText`).
  func list(_ filter: Filter, after token: PageToken?, limit: Int) async throws -> [OrderRecord] {
    let rows = try await client.prepared(ListText.self, Self.listQuery(filter, after: token, limit: limit), logger: logger)
    var records: [OrderRecord] = []
    for try await row in rows { records.append(try OrderRecord(rowWithLines: row)) }
    return records
  }

  static func listQuery(_ filter: Filter, after token: PageToken?, limit: Int) -> PostgresQuery {
    """
    SELECT \(unescaped: OrderRecord.columnsWithLines) FROM orders.orders \(unescaped: OrderRecord.withLines)
    WHERE (\(filter.customerID)::uuid IS NULL OR customer_id = \(filter.customerID)::uuid)
      AND (cardinality(\(filter.statuses)::int8[]) = 0 OR status = ANY(\(filter.statuses)::int8[]))
      AND (\(filter.channel)::int8 = 0 OR channel = \(filter.channel)::int8)
      AND (\(filter.createdAfter)::timestamptz IS NULL OR created_at >= \(filter.createdAfter)::timestamptz)
      AND (\(filter.createdBefore)::timestamptz IS NULL OR created_at < \(filter.createdBefore)::timestamptz)
      AND \(after: token, time: "created_at", id: "id", descending: true)
    ORDER BY created_at DESC, id DESC LIMIT \(limit)::int8
    """
  }

  enum ListText: StatementText { static let sql = OrderStore.listQuery(Filter(), after: nil, limit: 0).sql }

  /// A customer's order count, totals and refunds per currency, first/last and open orders.
  func summary(customerID: UUID) async throws -> Rapport_Order_V1_OrderSummary {
    let rows = try await client.prepared(SummaryText.self, Self.summaryQuery(customerID), logger: logger)
    var perCurrency: [CurrencySummary] = []
    for try await row in rows.decode(CurrencySummary.self) { perCurrency.append(row) }
    return Self.summary(customerID, perCurrency)
  }

  /// A customer's orders in one currency: `summaryColumns` in order.
  typealias CurrencySummary = (String, Int64, Int64, Int64, Date, Date, Int64)

  /// Per currency (grouped by it): the currency, orders, totals of those not cancelled, refunds, the
  /// first and last order's time and the orders still open.
  static let summaryColumns = """
    currency::text, count(*),
    coalesce(sum(total_minor) FILTER (WHERE status <> \(Rapport_Order_V1_OrderStatus.cancelled.rawValue)), 0)::bigint,
    sum(refunded_minor)::bigint, min(created_at), max(created_at),
    count(*) FILTER (WHERE status IN (\(openStatuses.map { String($0.rawValue) }.joined(separator: ", "))))
    """

  static func summary(_ customerID: UUID, _ perCurrency: [CurrencySummary]) -> Rapport_Order_V1_OrderSummary {
    var summary = Rapport_Order_V1_OrderSummary()
    summary.customerID = customerID.uuidString.lowercased()
    var first: Date?, last: Date?
    for (currency, count, total, refunded, earliest, latest, open) in perCurrency {
      summary.orderCount += count
      summary.openOrderCount += open
      summary.totals.append(.with {
        $0.currency = currency
        $0.amountMinor = total
      })
      if refunded > 0 {
        summary.refunded.append(.with {
          $0.currency = currency
          $0.amountMinor = refunded
        })
      }
      first = min(first ?? earliest, earliest)
      last = max(last ?? latest, latest)
    }
    if let first { summary.firstOrderTime = .init(microsecondsOf: first) }
    if let last { summary.lastOrderTime = .init(microsecondsOf: last) }
    return summary
  }

  static func summaryQuery(_ customerID: UUID) -> PostgresQuery {
    """
    SELECT \(unescaped: summaryColumns) FROM orders.orders WHERE customer_id = \(customerID)::uuid
    GROUP BY currency ORDER BY currency
    """
  }

  enum SummaryText: StatementText { static let sql = OrderStore.summaryQuery(UUID()).sql }

  /// GetCustomerOrderOverview: the summary and the `limit` most recent orders with their lines.
  func overview(customerID: UUID, limit: Int) async throws -> (Rapport_Order_V1_OrderSummary, [OrderRecord]) {
    try await overviews(customerIDs: [customerID], limit: limit)[customerID] ?? (Self.summary(customerID, []), [])
  }

  /// The overviews of several customers in one statement: per customer, the summary (per currency, as
  /// arrays) on every row, and the `limit` most recent orders with their lines (none: one row whose order
  /// columns are NULL). Every id asked has an entry.
  func overviews(
    customerIDs: [UUID], limit: Int
  ) async throws -> [UUID: (Rapport_Order_V1_OrderSummary, [OrderRecord])] {
    let rows = try await (genericPlans ?? client).prepared(OverviewText.self, Self.overviewQuery(customerIDs, limit: limit), logger: logger)
    var found: [UUID: (perCurrency: [CurrencySummary], recent: [OrderRecord])] = [:]
    for try await row in rows {
      var r = RowReader(row)
      let id = try r.next(UUID.self)
      let currencies = try r.next([String]?.self) ?? [], counts = try r.next([Int64]?.self) ?? []
      let totals = try r.next([Int64]?.self) ?? [], refunds = try r.next([Int64]?.self) ?? []
      let firsts = try r.next([Date]?.self) ?? [], lasts = try r.next([Date]?.self) ?? []
      let open = try r.next([Int64]?.self) ?? []
      guard !currencies.isEmpty else { continue }
      if found[id] == nil {
        let n = currencies.count
        guard counts.count == n, totals.count == n, refunds.count == n, firsts.count == n, lasts.count == n,
          open.count == n
        else { throw RPCFailure.internal("an order summary's arrays differ in length") }
        found[id] = ((0..<n).map { (currencies[$0], counts[$0], totals[$0], refunds[$0], firsts[$0], lasts[$0], open[$0]) }, [])
      }
      found[id]?.recent.append(try OrderRecord(readerWithLines: &r))
    }
    var overviews: [UUID: (Rapport_Order_V1_OrderSummary, [OrderRecord])] = [:]
    for id in customerIDs {
      let entry = found[id] ?? ([], [])
      overviews[id] = (Self.summary(id, entry.perCurrency), entry.recent)
    }
    return overviews
  }

  static func overviewQuery(_ customerIDs: [UUID], limit: Int) -> PostgresQuery {
    """
    SELECT k.id, s.*, r.*
    FROM unnest(\(customerIDs)::uuid[]) k(id)
    CROSS JOIN LATERAL (
      SELECT array_agg(g.c ORDER BY g.c), array_agg(g.n ORDER BY g.c), array_agg(g.t ORDER BY g.c),
        array_agg(g.rf ORDER BY g.c), array_agg(g.f ORDER BY g.c), array_agg(g.l ORDER BY g.c),
        array_agg(g.o ORDER BY g.c)
      FROM (SELECT \(unescaped: summaryColumns) FROM orders.orders WHERE customer_id = k.id
            GROUP BY currency) g(c, n, t, rf, f, l, o)) s
    LEFT JOIN LATERAL (
      SELECT \(unescaped: OrderRecord.columnsWithLines) FROM orders.orders \(unescaped: OrderRecord.withLines)
      WHERE customer_id = k.id ORDER BY created_at DESC, id DESC LIMIT \(limit)::int8) r ON true
    """
  }

  enum OverviewText: StatementText { static let sql = OrderStore.overviewQuery([], limit: 0).sql }

  /// PENDING, PAID, FULFILLED: orders still in progress.
  static let openStatuses: [Rapport_Order_V1_OrderStatus] = [.pending, .paid, .fulfilled]

  func decode<Rows: AsyncSequence>(_ rows: Rows) async throws -> [OrderRecord] where Rows.Element == PostgresRow {
    var records: [OrderRecord] = []
    for try await row in rows { records.append(try OrderRecord(row: row)) }
    return records
  }

}

extension Rapport_Order_V1_OrderLine {
  /// A stored line with its total.
  static func line(
    sku: String, title: String, quantity: Int64, price: Int64, discount: Int64, tax: Int64, currency: String
  ) -> Self {
    .with {
      $0.sku = sku
      $0.title = title
      $0.quantity = quantity
      $0.unitPriceMinor = price
      $0.discountMinor = discount
      $0.taxMinor = tax
      $0.currency = currency
      $0.totalMinor = quantity * price - discount + tax
    }
  }
}

/// PlaceOrder's statement prepared once per connection and executed by name: parsing, analysing and
/// planning a statement of nine CTEs costs the database more CPU than running it. It runs on the
/// generic-plan pool (`Pools.genericPlans`): with PostgreSQL's default it would still be planned on every
/// execution (its arrays of lines make the generic plan look dearer than one for the lines given).
struct PlaceOrderStatement: PostgresPreparedStatement {
  typealias Row = (Int64, Int64, Int64, Int64)
  /// The text for any order (the values are parameters).
  static let sql = OrderStore.placeQuery(
    OrderRecord(
      id: UUID(), customerID: UUID(), channel: 0, idempotencyKey: "", status: .pending, currency: "",
      createdAt: Date()), requestBytes: [], events: Outbox.Rows(), outbox: OrderMigrations.outbox
  ).sql

  let bindings: PostgresBindings

  func makeBindings() -> PostgresBindings { bindings }
  func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
}
