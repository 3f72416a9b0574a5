import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Bulk import: a batch of validated rows in one transaction, a few statements per batch.
extension CustomerStore {
  /// A validated import row: the customer to create (id, names, channel, tags, language, times) and its
  /// identities.
  struct ImportRow: Sendable {
    var number: Int64
    var customer: Customer
    var identities: [IdentityKey]
  }

  /// Creates the rows none of whose identities is owned (by a stored customer or an earlier row of the
  /// batch); counts the others as existing and leaves them unchanged. Emits one `CustomerCreated` per
  /// created row. Returns (created, existing).
  func importBatch(_ rows: [ImportRow]) async throws -> (created: Int, existing: Int) {
    guard !rows.isEmpty else { return (0, 0) }
    return try await retryingTransaction { connection in
      try await analyzeIfSmall(comparedTo: rows.count, on: connection)
      let all = Array(Set(rows.flatMap(\.identities)))
      var claimed = Set(try await owners(of: all, on: connection).keys)
      var fresh: [ImportRow] = []
      for row in rows where !row.identities.contains(where: claimed.contains) {
        fresh.append(row)
        claimed.formUnion(row.identities)
      }
      guard !fresh.isEmpty else { return (0, rows.count) }
      let ids = fresh.map { UUID(uuidString: $0.customer.id) ?? UUID() }
      let customers = fresh.map(\.customer)
      let times = customers.map(\.createTime.date)
      try await connection.query(
        """
        INSERT INTO customer.customers (id, given_name, family_name, channel, language, tags, created_at, updated_at)
        SELECT id, given, family, channel, language, coalesce(string_to_array(nullif(tags, ''), ','), '{}'), at, at
        FROM unnest(\(ids), \(customers.map(\.givenName)), \(customers.map(\.familyName)),
                    \(customers.map(\.channel.rawValue)), \(customers.map(\.preferences.language)),
                    \(customers.map { $0.tags.joined(separator: ",") }), \(times))
          AS r(id, given, family, channel, language, tags, at)
        """, logger: logger)
      let identities = zip(fresh, zip(ids, times)).flatMap { row, owner in
        row.identities.map { (key: $0, owner: owner.0, at: owner.1) }
      }.sorted { $0.key < $1.key }
      try await connection.query(
        """
        INSERT INTO customer.identities (kind, channel, value, customer_id, added_at)
        SELECT * FROM unnest(\(identities.map(\.key.kind)), \(identities.map(\.key.channel)),
                             \(identities.map(\.key.value)), \(identities.map(\.owner)), \(identities.map(\.at)))
        """, logger: logger)
      try await refreshDerived(ids, on: connection)
      try await outbox.append(
        contentsOf: customers.map { customer in
          Outbox.event(
            aggregateType: "customer", aggregateID: customer.id, occurredAt: customer.createTime.date,
            .customerCreated(.with {
              $0.customerID = customer.id
              $0.channel = customer.channel
              $0.profileFields = customer.profileFields
            }))
        }, on: connection, logger: logger)
      return (fresh.count, rows.count - fresh.count)
    }
  }

  /// Refreshes the planner's statistics while the customer table is small next to the batches written
  /// into it. The first import into an empty database otherwise runs on "empty table" statistics until
  /// autovacuum catches up, and the per-batch search-column refresh gets a plan that slows with every
  /// batch (measured: 1,000 rows/s instead of 5,000 for the first 100k rows). ANALYZE of a small table
  /// takes milliseconds; from 20 batches' worth of rows on, autovacuum's statistics are good enough.
  private func analyzeIfSmall(comparedTo batch: Int, on connection: PostgresConnection) async throws {
    let rows = try await connection.query(
      "SELECT reltuples::bigint FROM pg_class WHERE oid = 'customer.customers'::regclass", logger: logger)
    var estimate: Int64 = 0
    for try await value in rows.decode(Int64.self) { estimate = value }
    guard estimate < Int64(batch) * 20 else { return }
    try await connection.query("ANALYZE customer.customers, customer.identities", logger: logger)
  }
}
