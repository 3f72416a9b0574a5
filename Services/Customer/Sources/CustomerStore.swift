import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// Customer SQL; nothing else in the service touches the database. Domain refusals are thrown as the
/// `RPCError` the client sees (their messages name only what the caller sent).
struct CustomerStore: Sendable {
  let client: Database
  let logger: Logger
  let outbox = CustomerMigrations.outbox
  /// Reads by id outside a transaction, coalesced under load (`ReadBatcher`): up to 2 statements at once,
  /// each for up to 64 ids. (Measured with h2load at 64 streams: 2 at once gave the most reads per second;
  /// 10 — one per pooled connection — about a third fewer, each read then a round trip of its own.)
  let byID: ReadBatcher<UUID, Customer>

  typealias Customer = Rapport_Customer_V1_Customer

  /// - Parameter genericPlans: the generic-plan pool (`Pools.genericPlans`) for reads by id; the main pool when nil.
  init(client: Database, genericPlans: Database? = nil, logger: Logger) {
    self.client = client
    self.logger = logger
    let reads = genericPlans ?? client
    byID = ReadBatcher(maxInFlight: 2, maxBatch: 64) { ids in
      var found: [UUID: Customer] = [:]
      for customer in try await reads.execute(CustomerRows.ByIDs(ids: ids), logger: logger) {
        if let id = UUID(uuidString: customer.id) { found[id] = customer }
      }
      return found
    }
  }

  static let active = Rapport_Customer_V1_CustomerState.active.rawValue
  static let merged = Rapport_Customer_V1_CustomerState.merged.rawValue
  static let erased = Rapport_Customer_V1_CustomerState.erased.rawValue

  // MARK: Reads

  /// Runs a query on the caller's transaction when given one, else on the pool.
  func rows(_ query: PostgresQuery, on connection: PostgresConnection?) async throws -> Rows {
    if let connection { return Rows(try await connection.query(query, logger: logger).collect()) }
    return try await client.query(query, logger: logger)
  }

  /// The row with this id as stored (a tombstone stays a tombstone).
  func load(_ id: UUID, on connection: PostgresConnection? = nil, forUpdate: Bool = false) async throws -> Customer? {
    if connection == nil, !forUpdate { return try await byID.load(id) }
    let query: PostgresQuery = forUpdate
      ? "\(unescaped: CustomerRows.select) WHERE c.id = \(id) FOR UPDATE OF c"
      : "\(unescaped: CustomerRows.select) WHERE c.id = \(id)"
    let rows = try await rows(query, on: connection)
    for try await row in rows { return try Customer(row: row) }
    return nil
  }

  /// The customer with this id, or the survivor it was merged into (and the requested id).
  func get(_ id: UUID) async throws -> (customer: Customer, mergedFrom: String?)? {
    guard let customer = try await load(id) else { return nil }
    guard customer.state == .merged, let survivor = UUID(uuidString: customer.mergedInto),
      let resolved = try await load(survivor)
    else { return (customer, nil) }
    return (resolved, id.lowercased)
  }

  /// The live customer owning an identity.
  func find(_ identity: IdentityKey) async throws -> Customer? {
    let rows = try await client.query(
      """
      \(unescaped: CustomerRows.select) JOIN customer.identities x ON x.customer_id = c.id
      WHERE x.kind = \(identity.kind) AND x.channel = \(identity.channel) AND x.value = \(identity.value)
      """, logger: logger)
    for try await row in rows { return try Customer(row: row) }
    return nil
  }

  /// Owners of the given identities.
  func owners(of identities: [IdentityKey], on connection: PostgresConnection) async throws -> [IdentityKey: UUID] {
    let rows = try await connection.query(
      """
      SELECT i.kind, i.channel, i.value, i.customer_id FROM customer.identities i
      JOIN unnest(\(identities.map(\.kind)), \(identities.map(\.channel)), \(identities.map(\.value))) AS q(kind, channel, value)
        USING (kind, channel, value)
      """, logger: logger)
    var owners: [IdentityKey: UUID] = [:]
    for try await (kind, channel, value, owner) in rows.decode((Int, Int, String, UUID).self) {
      owners[IdentityKey(kind: kind, channel: channel, value: value)] = owner
    }
    return owners
  }

  // MARK: Writes

  /// Locks a customer for a change; NOT_FOUND, or FAILED_PRECONDITION for a merged or erased one.
  func lockActive(_ id: UUID, on connection: PostgresConnection) async throws -> Customer {
    guard let customer = try await load(id, on: connection, forUpdate: true) else {
      throw RPCFailure.notFound("customer", id.lowercased)
    }
    switch customer.state {
    case .merged:
      throw RPCFailure.failedPrecondition("customer '\(id.lowercased)' was merged into '\(customer.mergedInto)'")
    case .erased:
      throw RPCFailure.failedPrecondition("customer '\(id.lowercased)' was erased")
    default:
      return customer
    }
  }

  /// Inserts a customer with its identities and emits `CustomerCreated`. Throws a unique violation when
  /// an identity is taken.
  func insert(
    _ customer: Customer, identities: [IdentityKey], on connection: PostgresConnection
  ) async throws -> Customer {
    guard let id = UUID(uuidString: customer.id) else { throw RPCFailure.internal("customer without id") }
    let now = customer.createTime.date
    try await connection.query(
      """
      INSERT INTO customer.customers (id, given_name, family_name, channel, created_at, updated_at, language,
        currency, contact_channel, tags, extras)
      VALUES (\(id), \(customer.givenName), \(customer.familyName), \(customer.channel.rawValue), \(now), \(now),
        \(customer.preferences.language), \(customer.preferences.currency),
        \(customer.preferences.contactChannel.rawValue), \(customer.tags), \(try CustomerRows.extras(of: customer))::jsonb)
      """, logger: logger)
    try await insertIdentities(identities, of: id, at: now, on: connection)
    try await refreshDerived([id], on: connection)
    try await emit(
      .customerCreated(.with {
        $0.customerID = customer.id
        $0.channel = customer.channel
        $0.profileFields = customer.profileFields
      }), about: customer.id, at: now, on: connection)
    guard let stored = try await load(id, on: connection) else { throw RPCFailure.internal("customer vanished") }
    return stored
  }

  /// Adds identities nobody owns to a customer; a unique violation when one was taken meanwhile (callers
  /// check owners first in the same transaction and retry on the violation).
  func insertIdentities(
    _ identities: [IdentityKey], of id: UUID, at time: Date, on connection: PostgresConnection
  ) async throws {
    guard !identities.isEmpty else { return }
    // Sorted, so concurrent writers take the index locks in one order and cannot deadlock.
    let sorted = identities.sorted()
    try await connection.query(
      """
      INSERT INTO customer.identities (kind, channel, value, customer_id, added_at)
      SELECT kind, channel, value, \(id), \(time)
      FROM unnest(\(sorted.map(\.kind)), \(sorted.map(\.channel)), \(sorted.map(\.value))) AS q(kind, channel, value)
      """, logger: logger)
  }

  /// Rewrites the profile columns from `customer`, bumps the version and refreshes search columns.
  func writeProfile(_ customer: Customer, at time: Date, on connection: PostgresConnection) async throws {
    guard let id = UUID(uuidString: customer.id) else { throw RPCFailure.internal("customer without id") }
    try await connection.query(
      """
      UPDATE customer.customers SET given_name = \(customer.givenName), family_name = \(customer.familyName),
        language = \(customer.preferences.language), currency = \(customer.preferences.currency),
        contact_channel = \(customer.preferences.contactChannel.rawValue), tags = \(customer.tags),
        extras = \(try CustomerRows.extras(of: customer))::jsonb, version = version + 1,
        updated_at = \(time)
      WHERE id = \(id)
      """, logger: logger)
    try await refreshDerived([id], on: connection)
  }

  /// Bumps a customer's version (identity or link changes) and refreshes its search columns.
  func touch(_ id: UUID, at time: Date, on connection: PostgresConnection) async throws {
    try await connection.query(
      "UPDATE customer.customers SET version = version + 1, updated_at = \(time) WHERE id = \(id)", logger: logger)
    try await refreshDerived([id], on: connection)
  }

  /// Recomputes the columns search uses (lower-case names and emails; channels seen) from the source of truth.
  func refreshDerived(_ ids: [UUID], on connection: PostgresConnection) async throws {
    try await connection.query(
      """
      UPDATE customer.customers c SET
        search_text = CASE WHEN c.state = \(code: Rapport_Customer_V1_CustomerState.active) THEN lower(concat_ws(' ', c.given_name, c.family_name,
          (SELECT string_agg(i.value, ' ' ORDER BY i.added_at) FROM customer.identities i
           WHERE i.customer_id = c.id AND i.kind = \(code: Rapport_Customer_V1_IdentityKind.email)))) ELSE '' END,
        channels = ARRAY(SELECT DISTINCT x FROM unnest(array_prepend(c.channel,
          ARRAY(SELECT i.channel FROM customer.identities i WHERE i.customer_id = c.id AND i.kind = \(code: Rapport_Customer_V1_IdentityKind.externalID)))) AS x
          WHERE x <> 0 ORDER BY x)
      WHERE c.id = ANY(\(ids))
      """, logger: logger)
  }

  /// Appends an event about a customer (or company) to the outbox in the caller's transaction.
  func emit(
    _ payload: Rapport_Events_V1_Event.OneOf_Payload, about id: String, aggregate: String = "customer",
    at time: Date, on connection: PostgresConnection
  ) async throws {
    try await outbox.append(
      Outbox.event(aggregateType: aggregate, aggregateID: id, occurredAt: time, payload), on: connection,
      logger: logger)
  }

  /// Runs `body` in a transaction, retrying up to three times when it lost a race with a concurrent
  /// writer (a unique violation, a deadlock or a serialization failure) — the retry sees the winner.
  func retryingTransaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
    try await client.retryingTransaction(logger: logger, retrying: Database.conflicts.union(["23505"]), body)
  }
}
