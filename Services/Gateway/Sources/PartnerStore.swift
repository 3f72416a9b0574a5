import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// A stored API key (never the key itself: its hash) and what it may do.
struct KeyRecord: Sendable {
  var id: UUID
  var partnerID: UUID
  var secretHash: [UInt8]
  var scopes: [String]
  var companyIDs: [UUID]
  var ratePerSecond: Int
  var burst: Int
  var expiresAt: Date?
  var revokedAt: Date?
  var createdAt: Date
  var lastUsedAt: Date?
  /// The partner's state, joined in by every read.
  var partnerState: Rapport_Gateway_V1_PartnerState = .active

  /// The columns `init(row:)` reads, in its order, from `gateway.api_keys k JOIN gateway.partners p`.
  static let columns = """
    k.id, k.partner_id, k.secret_hash, k.scopes, k.company_ids, k.rate_per_second, k.burst, k.expires_at,
    k.revoked_at, k.created_at, k.last_used_at, p.state
    """

  /// Whether the key is accepted at `now`: not revoked, not expired, its partner active.
  func isUsable(at now: Date) -> Bool {
    partnerState == .active && (revokedAt.map { $0 > now } ?? true) && (expiresAt.map { $0 > now } ?? true)
  }

  var proto: Rapport_Gateway_V1_ApiKey {
    .with {
      $0.id = id.uuidString.lowercased()
      $0.partnerID = partnerID.uuidString.lowercased()
      $0.displayPrefix = KeySecret.displayPrefix(id)
      $0.scopes = scopes
      $0.companyIds = companyIDs.map { $0.uuidString.lowercased() }
      $0.ratePerSecond = Int32(ratePerSecond)
      $0.burst = Int32(burst)
      if let expiresAt { $0.expireTime = .init(microsecondsOf: expiresAt) }
      if let revokedAt { $0.revokeTime = .init(microsecondsOf: revokedAt) }
      $0.createTime = .init(microsecondsOf: createdAt)
      if let lastUsedAt { $0.lastUsedTime = .init(microsecondsOf: lastUsedAt) }
    }
  }
}

extension KeyRecord {
  init(row: PostgresRow) throws {
    var r = RowReader(row)
    self.init(
      id: try r.next(), partnerID: try r.next(), secretHash: Array(try r.next(ByteBuffer.self).readableBytesView),
      scopes: try r.next(), companyIDs: try r.next(), ratePerSecond: try r.next(), burst: try r.next(),
      expiresAt: try r.next(), revokedAt: try r.next(), createdAt: try r.next(), lastUsedAt: try r.next(),
      partnerState: .init(rawValue: try r.next(Int.self)) ?? .unspecified)
  }
}

extension Rapport_Gateway_V1_Partner {
  /// The columns `init(row:)` reads, in its order, from `gateway.partners`.
  static let columns = "id, name, contact, state, created_at"

  init(row: PostgresRow) throws {
    var r = RowReader(row)
    self.init()
    id = try r.next(UUID.self).uuidString.lowercased()
    name = try r.next()
    contact = try r.next()
    state = .init(rawValue: try r.next(Int.self)) ?? .unspecified
    createTime = .init(microsecondsOf: try r.next(Date.self))
  }
}

/// Partner and key SQL; nothing else in the gateway touches the database.
struct PartnerStore: Sendable {
  let client: Database
  let logger: Logger

  func createPartner(name: String, contact: String, at now: Date) async throws -> Rapport_Gateway_V1_Partner {
    let rows = try await client.query(
      """
      INSERT INTO gateway.partners (id, name, contact, state, created_at)
      VALUES (\(UUID()), \(name), \(contact), \(Rapport_Gateway_V1_PartnerState.active.rawValue), \(now))
      RETURNING \(unescaped: Rapport_Gateway_V1_Partner.columns)
      """, logger: logger)
    for try await row in rows { return try .init(row: row) }
    throw RPCFailure.internal("partner insert returned no row")
  }

  func partners() async throws -> [Rapport_Gateway_V1_Partner] {
    let rows = try await client.query(
      "SELECT \(unescaped: Rapport_Gateway_V1_Partner.columns) FROM gateway.partners ORDER BY created_at, id",
      logger: logger)
    var result: [Rapport_Gateway_V1_Partner] = []
    for try await row in rows { result.append(try .init(row: row)) }
    return result
  }

  /// Disables a partner (idempotent); nil when there is none.
  func disable(_ id: UUID) async throws -> Rapport_Gateway_V1_Partner? {
    let rows = try await client.query(
      """
      UPDATE gateway.partners SET state = \(Rapport_Gateway_V1_PartnerState.disabled.rawValue) WHERE id = \(id)
      RETURNING \(unescaped: Rapport_Gateway_V1_Partner.columns)
      """, logger: logger)
    for try await row in rows { return try .init(row: row) }
    return nil
  }

  /// Stores a new key for an active partner: NOT_FOUND for an unknown partner, FAILED_PRECONDITION for a
  /// disabled one.
  func insert(_ key: KeyRecord) async throws -> KeyRecord {
    try await client.transaction(logger: logger) { connection in
      try await insert(key, on: connection)
    }
  }

  private func insert(_ key: KeyRecord, on connection: PostgresConnection) async throws -> KeyRecord {
    let partner = try await connection.query(
      "SELECT state FROM gateway.partners WHERE id = \(key.partnerID) FOR SHARE", logger: logger)
    var state: Int?
    for try await value in partner.decode(Int.self) { state = value }
    guard let state else { throw RPCFailure.notFound("partner", key.partnerID.uuidString.lowercased()) }
    guard state == Rapport_Gateway_V1_PartnerState.active.rawValue else {
      throw RPCFailure.failedPrecondition("partner is disabled")
    }
    try await connection.query(
      """
      INSERT INTO gateway.api_keys (id, partner_id, secret_hash, scopes, company_ids, rate_per_second, burst,
        expires_at, created_at)
      VALUES (\(key.id), \(key.partnerID), \(key.secretHash.bytea), \(key.scopes), \(key.companyIDs),
        \(key.ratePerSecond), \(key.burst), \(key.expiresAt), \(key.createdAt))
      """, logger: logger)
    return key
  }

  /// One key with its partner's state (the verifier's read).
  func key(_ id: UUID) async throws -> KeyRecord? {
    try await keys(
      """
      SELECT \(unescaped: KeyRecord.columns) FROM gateway.api_keys k JOIN gateway.partners p ON p.id = k.partner_id
      WHERE k.id = \(id)
      """
    ).first
  }

  func keys(of partnerID: UUID) async throws -> [KeyRecord] {
    try await keys(
      """
      SELECT \(unescaped: KeyRecord.columns) FROM gateway.api_keys k JOIN gateway.partners p ON p.id = k.partner_id
      WHERE k.partner_id = \(partnerID) ORDER BY k.created_at, k.id
      """)
  }

  private func keys(_ query: PostgresQuery) async throws -> [KeyRecord] {
    var result: [KeyRecord] = []
    for try await row in try await client.query(query, logger: logger) { result.append(try KeyRecord(row: row)) }
    return result
  }

  /// Ends a key at `time` unless it already ended earlier (revocation is idempotent; a rotation never
  /// extends a key); nil when there is no such key.
  func end(_ id: UUID, at time: Date) async throws -> KeyRecord? {
    try await client.query(
      """
      UPDATE gateway.api_keys SET revoked_at = \(time)
      WHERE id = \(id) AND (revoked_at IS NULL OR revoked_at > \(time))
      """, logger: logger)
    return try await key(id)
  }

  /// Rotation in one transaction: the new key (same partner, scopes, companies, limits) and the old
  /// key's end.
  func rotate(_ old: KeyRecord, to new: KeyRecord, oldEnds end: Date) async throws {
    try await client.transaction(logger: logger) { connection in
      _ = try await insert(new, on: connection)
      try await connection.query(
        """
        UPDATE gateway.api_keys SET revoked_at = \(end)
        WHERE id = \(old.id) AND (revoked_at IS NULL OR revoked_at > \(end))
        """, logger: logger)
    }
  }

  /// Records that keys were used (callers batch: at most once a minute per key).
  func touch(_ ids: [UUID], at time: Date) async throws {
    guard !ids.isEmpty else { return }
    try await client.query(
      "UPDATE gateway.api_keys SET last_used_at = \(time) WHERE id = ANY(\(ids))", logger: logger)
  }

  /// Whether any usable admin key exists (the first-key bootstrap).
  func hasAdminKey(at now: Date) async throws -> Bool {
    let rows = try await client.query(
      """
      SELECT count(*) FROM gateway.api_keys k JOIN gateway.partners p ON p.id = k.partner_id
      WHERE 'admin' = ANY(k.scopes) AND p.state = \(Rapport_Gateway_V1_PartnerState.active.rawValue)
        AND (k.revoked_at IS NULL OR k.revoked_at > \(now)) AND (k.expires_at IS NULL OR k.expires_at > \(now))
      """, logger: logger)
    for try await count in rows.decode(Int64.self) { return count > 0 }
    return false
  }
}
