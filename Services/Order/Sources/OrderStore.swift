import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// An order as stored, with its lines.
struct OrderRecord: Sendable {
  var id: UUID
  var customerID: UUID
  var channel: Int
  var idempotencyKey: String
  var status: Rapport_Order_V1_OrderStatus
  var currency: String
  var totalMinor: Int64
  var createdAt: Date
  var lines: [Rapport_Order_V1_OrderLine]

  var proto: Rapport_Order_V1_Order {
    .with {
      $0.id = id.uuidString.lowercased()
      $0.customerID = customerID.uuidString.lowercased()
      $0.channel = Rapport_Common_V1_Channel(rawValue: channel) ?? .unspecified
      $0.idempotencyKey = idempotencyKey
      $0.status = status
      $0.lines = lines
      $0.total = .with {
        $0.amountMinor = totalMinor
        $0.currency = currency
      }
      $0.createTime = .init(microsecondsOf: createdAt)
    }
  }
}

/// Order SQL; nothing else in the service touches the database.
struct OrderStore: Sendable {
  enum Placement: Sendable {
    case created(OrderRecord)
    case replayed(OrderRecord)
    case keyConflict
  }

  let client: PostgresClient
  let logger: Logger
  private let outbox = OrderMigrations.outbox
  private static let columns =
    "id, customer_id, channel, idempotency_key, status, currency, total_minor, created_at"

  /// The order an earlier request with this key created, and whether `requestBytes` is that request.
  func existing(channel: Int, key: String, requestBytes: [UInt8]) async throws -> Placement? {
    let rows = try await client.query(
      """
      SELECT \(unescaped: Self.columns), request_hash = sha256(\(requestBytes.bytea))
      FROM orders.orders WHERE channel = \(channel) AND idempotency_key = \(key)
      """, logger: logger)
    return try await placement(rows)
  }

  private let aliases = CustomerAliases(schema: OrderMigrations.schema)

  /// Applies a customer-feed event in the caller's (cursor) transaction: `CustomerMerged` moves the
  /// duplicate's orders to the survivor. `CustomerErased` has nothing to drop yet: orders hold no
  /// personal fields (no address snapshots) so far.
  func applyCustomerEvent(_ event: Rapport_Events_V1_Event, on connection: PostgresConnection) async throws {
    guard case .customerMerged(let merge)? = event.payload,
      let (survivor, duplicate) = try await aliases.record(merge, at: event.occurredAt.date, on: connection, logger: logger)
    else { return }
    try await connection.query(
      "UPDATE orders.orders SET customer_id = \(survivor) WHERE customer_id = \(duplicate)", logger: logger)
  }

  /// Inserts the order, its lines and `OrderPlaced` in one transaction. A concurrent request with the same
  /// key waits on the unique index and then replays (or conflicts with) the winner.
  func place(_ order: OrderRecord, requestBytes: [UInt8]) async throws -> Placement {
    let outcome = try await insert(order, requestBytes: requestBytes)
    switch outcome {
    case .created(let stored, let customer):
      var order = order
      order.createdAt = stored
      order.customerID = customer
      return .created(order)
    case .existing(_, sameRequest: false): return .keyConflict
    case .existing(let id, sameRequest: true):
      // Read after the transaction: a pool connection is never held while waiting for another.
      guard let earlier = try await get(id: id) else { throw RPCFailure.internal("replayed order vanished") }
      return .replayed(earlier)
    }
  }

  private enum Insertion: Sendable {
    case created(Date, customer: UUID)
    case existing(UUID, sameRequest: Bool)
  }

  private func insert(_ order: OrderRecord, requestBytes: [UInt8]) async throws -> Insertion {
    try await client.transaction(logger: logger) { connection in
      var order = order
      order.customerID = try await aliases.canonical(order.customerID, on: connection, logger: logger)
      let inserted = try await connection.query(
        """
        INSERT INTO orders.orders (\(unescaped: Self.columns), request_hash)
        VALUES (\(order.id), \(order.customerID), \(order.channel), \(order.idempotencyKey),
                \(order.status.rawValue), \(order.currency), \(order.totalMinor), \(order.createdAt),
                sha256(\(requestBytes.bytea)))
        ON CONFLICT (channel, idempotency_key) DO NOTHING
        RETURNING created_at
        """, logger: logger)
      var stored: Date?
      for try await createdAt in inserted.decode(Date.self) { stored = createdAt }
      guard let stored else {
        let rows = try await connection.query(
          """
          SELECT id, request_hash = sha256(\(requestBytes.bytea))
          FROM orders.orders WHERE channel = \(order.channel) AND idempotency_key = \(order.idempotencyKey)
          """, logger: logger)
        for try await (id, same) in rows.decode((UUID, Bool).self) { return .existing(id, sameRequest: same) }
        throw RPCFailure.internal("idempotency conflict without a stored order")
      }
      try await connection.query(
        """
        INSERT INTO orders.order_lines (order_id, line_no, sku, title, quantity, unit_price_minor)
        SELECT \(order.id), n, sku, title, quantity, price
        FROM unnest(\(Array(1...order.lines.count)), \(order.lines.map(\.sku)), \(order.lines.map(\.title)),
                    \(order.lines.map(\.quantity)), \(order.lines.map(\.unitPriceMinor)))
             AS l(n, sku, title, quantity, price)
        """, logger: logger)
      let proto = order.proto
      let event = Outbox.event(
        aggregateType: "order", aggregateID: proto.id, occurredAt: order.createdAt,
        .orderPlaced(.with {
          $0.orderID = proto.id
          $0.customerID = proto.customerID
          $0.channel = proto.channel
          $0.total = proto.total
          $0.lineCount = Int32(order.lines.count)
          $0.placedAt = proto.createTime
        }))
      try await outbox.append(event, on: connection, logger: logger)
      return .created(stored, customer: order.customerID)
    }
  }

  func get(id: UUID) async throws -> OrderRecord? {
    let rows = try await client.query(
      "SELECT \(unescaped: Self.columns) FROM orders.orders WHERE id = \(id)", logger: logger)
    return try await withLines(decode(rows)).first
  }

  /// A customer's orders, newest first, after the page token's position.
  func list(customerID: UUID, after token: PageToken?, limit: Int) async throws -> [OrderRecord] {
    let rows: PostgresRowSequence
    if let token {
      rows = try await client.query(
        """
        SELECT \(unescaped: Self.columns) FROM orders.orders
        WHERE customer_id = \(customerID) AND (created_at, id) < ('epoch'::timestamptz + \(token.micros) * interval '1 microsecond', \(token.id))
        ORDER BY created_at DESC, id DESC LIMIT \(limit)
        """, logger: logger)
    } else {
      rows = try await client.query(
        """
        SELECT \(unescaped: Self.columns) FROM orders.orders WHERE customer_id = \(customerID)
        ORDER BY created_at DESC, id DESC LIMIT \(limit)
        """, logger: logger)
    }
    return try await withLines(decode(rows))
  }

  private typealias Row = (UUID, UUID, Int, String, Int, String, Int64, Date)

  private func record(_ row: Row) -> OrderRecord {
    OrderRecord(
      id: row.0, customerID: row.1, channel: row.2, idempotencyKey: row.3,
      status: Rapport_Order_V1_OrderStatus(rawValue: row.4) ?? .unspecified, currency: row.5,
      totalMinor: row.6, createdAt: row.7, lines: [])
  }

  private func decode(_ rows: PostgresRowSequence) async throws -> [OrderRecord] {
    var records: [OrderRecord] = []
    for try await row in rows.decode(Row.self) { records.append(record(row)) }
    return records
  }

  private func placement(_ rows: PostgresRowSequence) async throws -> Placement? {
    for try await row in rows.decode((UUID, UUID, Int, String, Int, String, Int64, Date, Bool).self) {
      guard row.8 else { return .keyConflict }
      let order = record((row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7))
      return .replayed(try await withLines([order])[0])
    }
    return nil
  }

  /// Loads the lines of `orders` in one query.
  private func withLines(_ orders: [OrderRecord]) async throws -> [OrderRecord] {
    guard !orders.isEmpty else { return [] }
    let rows = try await client.query(
      """
      SELECT order_id, sku, title, quantity, unit_price_minor FROM orders.order_lines
      WHERE order_id = ANY(\(orders.map(\.id))) ORDER BY order_id, line_no
      """, logger: logger)
    var lines: [UUID: [Rapport_Order_V1_OrderLine]] = [:]
    for try await (orderID, sku, title, quantity, price) in rows.decode((UUID, String, String, Int64, Int64).self) {
      lines[orderID, default: []].append(.with {
        $0.sku = sku
        $0.title = title
        $0.quantity = quantity
        $0.unitPriceMinor = price
      })
    }
    return orders.map { order in
      var order = order
      order.lines = lines[order.id] ?? []
      return order
    }
  }
}
