import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// What the order service knows of a customer (`orders.customer_refs`).
enum CustomerRef: Sendable, Equatable {
  case active
  case merged(into: UUID)
  case erased

  /// The code stored in `orders.customer_refs.state`.
  enum State: Int {
    case active = 1, merged = 2, erased = 3
  }

  var state: State {
    switch self {
    case .active: .active
    case .merged: .merged
    case .erased: .erased
    }
  }
}

extension OrderStore {
  private var aliases: CustomerAliases { CustomerAliases(schema: OrderMigrations.schema) }

  func customerRef(_ id: UUID) async throws -> CustomerRef? {
    let rows = try await client.query(
      "SELECT state, survivor_id FROM orders.customer_refs WHERE customer_id = \(id)", logger: logger)
    for try await (state, survivor) in rows.decode((Int, UUID?).self) {
      switch (CustomerRef.State(rawValue: state), survivor) {
      case (.merged?, let survivor?): return .merged(into: survivor)
      case (.erased?, _): return .erased
      default: return .active
      }
    }
    return nil
  }

  /// Records what the customer service confirmed; never overrides a MERGED or ERASED learnt from the feed.
  func remember(_ id: UUID, as ref: CustomerRef, at time: Date) async throws {
    try await client.withConnection { try await setRef(id, ref, at: time, overwrite: false, on: $0) }
  }

  /// Applies a customer-feed event in the caller's (cursor) transaction. The customer's reference row is
  /// written first: that waits for any order insert holding it share-locked, and any later insert sees
  /// the new state, so the re-pointing/redaction below never misses an order.
  /// - `CustomerMerged`: the duplicate's orders and carts move to the survivor.
  /// - `CustomerErased`: address snapshots and anonymous cart ids are dropped; amounts, states and times stay.
  func applyCustomerEvent(_ event: Rapport_Events_V1_Event, on connection: PostgresConnection) async throws {
    let time = event.occurredAt.date
    switch event.payload {
    case .customerMerged(let merge)?:
      guard let (survivor, duplicate) = try await aliases.record(merge, at: time, on: connection, logger: logger)
      else { return }
      try await setRef(duplicate, .merged(into: survivor), at: time, on: connection)
      try await connection.query(
        "UPDATE orders.customer_refs SET survivor_id = \(survivor) WHERE survivor_id = \(duplicate)", logger: logger)
      try await connection.query(
        "UPDATE orders.orders SET customer_id = \(survivor) WHERE customer_id = \(duplicate)", logger: logger)
      try await connection.query(
        "UPDATE orders.carts SET customer_id = \(survivor) WHERE customer_id = \(duplicate)", logger: logger)
    case .customerErased(let erased)?:
      guard let id = UUID(uuidString: erased.customerID) else { return }
      try await setRef(id, .erased, at: time, on: connection)
      try await connection.query(
        """
        UPDATE orders.orders SET shipping_address = NULL, billing_address = NULL
        WHERE customer_id = \(id) AND (shipping_address IS NOT NULL OR billing_address IS NOT NULL)
        """, logger: logger)
      try await connection.query(
        "UPDATE orders.carts SET anonymous_id = NULL WHERE customer_id = \(id)", logger: logger)
    default:
      return
    }
  }

  private func setRef(
    _ id: UUID, _ ref: CustomerRef, at time: Date, overwrite: Bool = true, on connection: PostgresConnection
  ) async throws {
    var survivor: UUID?
    if case .merged(let into) = ref { survivor = into }
    try await connection.query(
      """
      INSERT INTO orders.customer_refs (customer_id, state, survivor_id, updated_at)
      VALUES (\(id), \(ref.state.rawValue), \(survivor), \(time))
      ON CONFLICT (customer_id) DO UPDATE SET state = EXCLUDED.state, survivor_id = EXCLUDED.survivor_id,
        updated_at = EXCLUDED.updated_at
      WHERE \(overwrite)
      """, logger: logger)
  }
}
