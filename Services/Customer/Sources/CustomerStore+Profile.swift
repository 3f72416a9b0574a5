import Foundation
import GRPCCore
import PostgresNIO
import RapportCore
import RapportProtos

/// Creating, resolving, updating and searching customers.
extension CustomerStore {
  /// Creates a customer owning `identities`; ALREADY_EXISTS naming the first identity someone owns.
  func create(_ customer: Customer, identities: [IdentityKey]) async throws -> Customer {
    try await retryingTransaction { connection in
      let owners = try await owners(of: identities, on: connection)
      if let taken = identities.first(where: { owners[$0] != nil }) {
        throw RPCFailure.alreadyExists("\(taken.fieldName): a customer with this \(taken.fieldName) already exists")
      }
      return try await insert(customer, identities: identities, on: connection)
    }
  }

  struct Resolution: Sendable {
    var customer: Customer
    var created: Bool
    var conflicts: [(IdentityKey, UUID)]
  }

  /// Finds the owner of the first identity someone owns (request order) and gives it the unowned ones,
  /// or creates `template` with all of them. Concurrent resolutions of one new identity: one inserts,
  /// the others hit the unique index, retry and find it.
  func resolve(_ identities: [IdentityKey], template: Customer) async throws -> Resolution {
    try await retryingTransaction { connection in
      let owners = try await owners(of: identities, on: connection)
      guard let owner = identities.lazy.compactMap({ owners[$0] }).first else {
        let created = try await insert(template, identities: identities, on: connection)
        return Resolution(customer: created, created: true, conflicts: [])
      }
      var customer = try await lockActive(owner, on: connection)
      let unowned = identities.filter { owners[$0] == nil }
      if !unowned.isEmpty {
        let now = Date.databaseNow
        try await insertIdentities(unowned, of: owner, at: now, on: connection)
        try await touch(owner, at: now, on: connection)
        for identity in unowned {
          try await emitIdentityChange(identity, of: customer.id, added: true, at: now, on: connection)
        }
        customer = try await load(owner, on: connection) ?? customer
      }
      let conflicts = identities.compactMap { key in owners[key].flatMap { $0 == owner ? nil : (key, $0) } }
      return Resolution(customer: customer, created: false, conflicts: conflicts)
    }
  }

  /// Applies `change` to the live customer when its version is `expectedVersion` (ABORTED otherwise),
  /// stores it and emits `CustomerUpdated` with `paths`.
  func update(
    _ id: UUID, expectedVersion: Int64, paths: [String], change: @Sendable (inout Customer) -> Void
  ) async throws -> Customer {
    try await client.transaction(logger: logger) { connection in
      var customer = try await lockActive(id, on: connection)
      guard customer.version == expectedVersion else {
        throw RPCError(
          code: .aborted,
          message: "expected_version \(expectedVersion) is stale: the customer is at version \(customer.version); read it again")
      }
      change(&customer)
      let now = Date.databaseNow
      try await writeProfile(customer, at: now, on: connection)
      try await emit(
        .customerUpdated(.with {
          $0.customerID = customer.id
          $0.changedFields = paths
          $0.version = customer.version + 1
        }), about: customer.id, at: now, on: connection)
      return try await load(id, on: connection) ?? customer
    }
  }

  /// Gives a live customer an identity; ALREADY_EXISTS when another customer owns it.
  func addIdentity(_ identity: IdentityKey, to id: UUID) async throws -> Customer {
    try await retryingTransaction { connection in
      let customer = try await lockActive(id, on: connection)
      let owner = try await owners(of: [identity], on: connection)[identity]
      if owner == id { return customer }
      if owner != nil {
        throw RPCFailure.alreadyExists("identity: another customer has this \(identity.fieldName)")
      }
      let now = Date.databaseNow
      try await insertIdentities([identity], of: id, at: now, on: connection)
      try await touch(id, at: now, on: connection)
      try await emitIdentityChange(identity, of: customer.id, added: true, at: now, on: connection)
      return try await load(id, on: connection) ?? customer
    }
  }

  /// Removes an identity from a live customer; NOT_FOUND when it does not own it.
  func removeIdentity(_ identity: IdentityKey, from id: UUID) async throws -> Customer {
    try await client.transaction(logger: logger) { connection in
      let customer = try await lockActive(id, on: connection)
      let rows = try await connection.query(
        """
        DELETE FROM customer.identities
        WHERE kind = \(identity.kind) AND channel = \(identity.channel) AND value = \(identity.value)
          AND customer_id = \(id)
        RETURNING customer_id
        """, logger: logger)
      var removed = false
      for try await _ in rows { removed = true }
      guard removed else { throw RPCError(code: .notFound, message: "the customer has no such \(identity.fieldName)") }
      let now = Date.databaseNow
      try await touch(id, at: now, on: connection)
      try await emitIdentityChange(identity, of: customer.id, added: false, at: now, on: connection)
      return try await load(id, on: connection) ?? customer
    }
  }

  func emitIdentityChange(
    _ identity: IdentityKey, of customerID: String, added: Bool, at time: Date, on connection: PostgresConnection
  ) async throws {
    try await emit(
      .customerIdentityChanged(.with {
        $0.customerID = customerID
        $0.kind = identity.proto.kind
        $0.channel = identity.proto.channel
        $0.added = added
      }), about: customerID, at: time, on: connection)
  }

  /// Search filters; empty/nil fields do not filter.
  struct SearchFilter: Sendable {
    var fragment = ""
    var tag = ""
    var companyID: UUID?
    var channel = 0
    var createdAfter: Date?
    var createdBefore: Date?
  }

  /// Live customers matching `filter`, newest first, after the keyset `token`.
  func search(_ filter: SearchFilter, after token: PageToken?, limit: Int) async throws -> [Customer] {
    let pattern = filter.fragment.isEmpty ? "" : "%" + Self.escapeLike(filter.fragment.lowercased()) + "%"
    let rows = try await client.query(
      """
      \(unescaped: CustomerRows.select)
      WHERE c.state = \(code: Rapport_Customer_V1_CustomerState.active)
        AND (\(pattern) = '' OR c.search_text LIKE \(pattern))
        AND (\(filter.tag) = '' OR c.tags @> ARRAY[\(filter.tag)]::text[])
        AND (\(filter.companyID)::uuid IS NULL OR EXISTS (SELECT 1 FROM customer.company_contacts cc
             WHERE cc.company_id = \(filter.companyID) AND cc.customer_id = c.id))
        AND (\(filter.channel) = 0 OR c.channels @> ARRAY[\(filter.channel)]::integer[])
        AND (\(filter.createdAfter)::timestamptz IS NULL OR c.created_at >= \(filter.createdAfter))
        AND (\(filter.createdBefore)::timestamptz IS NULL OR c.created_at < \(filter.createdBefore))
        AND \(after: token, time: "c.created_at", id: "c.id", descending: true)
      ORDER BY c.created_at DESC, c.id DESC
      LIMIT \(limit)
      """, logger: logger)
    var customers: [Customer] = []
    for try await row in rows { customers.append(try Customer(row: row)) }
    return customers
  }

  /// `text` with LIKE's wildcards escaped (the default escape character is the backslash).
  static func escapeLike(_ text: String) -> String {
    text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "%", with: "\\%")
      .replacingOccurrences(of: "_", with: "\\_")
  }
}

extension IdentityKey {
  /// How refusals name the identity: "email", "phone" or "external id".
  var fieldName: String {
    switch kind {
    case Kind.email: "email"
    case Kind.phone: "phone"
    default: "external id"
    }
  }
}
