import Foundation
import GRPCCore
import Logging
import RapportCore
import RapportProtos

/// Validation of the admin service's input; each failure names the field.
enum AdminInput {
  static let maxCompanies = 100
  static let maxRate = 10_000

  static func scopes(_ raw: [String]) throws -> [String] {
    guard !raw.isEmpty else { throw RPCFailure.invalid("scopes", "at least one scope is required") }
    for (index, scope) in raw.enumerated() where Scope(rawValue: scope) == nil {
      throw RPCFailure.invalid(
        "scopes[\(index)]", "unknown scope; known: \(Scope.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return Array(Set(raw)).sorted()
  }

  static func companies(_ raw: [String]) throws -> [UUID] {
    guard raw.count <= maxCompanies else { throw RPCFailure.invalid("company_ids", "at most \(maxCompanies)") }
    return try Array(Set(raw.enumerated().map { try Validate.uuid($1, field: "company_ids[\($0)]") }))
      .sorted { $0.uuidString < $1.uuidString }
  }

  /// A rate or burst: 0 means `fallback`.
  static func limit(_ value: Int32, field: String, default fallback: Int) throws -> Int {
    if value == 0 { return fallback }
    guard value > 0, value <= maxRate else { throw RPCFailure.invalid(field, "must be between 1 and \(maxRate)") }
    return Int(value)
  }
}

/// `rapport.gateway.v1.PartnerAdmin`: partners and keys (every call needs an `admin` key: PartnerAuth).
struct AdminRPCs: Rapport_Gateway_V1_PartnerAdmin.SimpleServiceProtocol {
  let store: PartnerStore
  /// Rate and burst of keys created without their own.
  let defaultRate: Int
  let defaultBurst: Int
  let logger: Logger

  func createPartner(
    request: Rapport_Gateway_V1_CreatePartnerRequest, context: ServerContext
  ) async throws -> Rapport_Gateway_V1_CreatePartnerResponse {
    let name = try Validate.required(request.name, field: "name", max: 200)
    let contact = try Validate.optional(request.contact, field: "contact", max: 200)
    let partner = try await store.createPartner(name: name, contact: contact, at: Date())
    AuditLog.target("partner", partner.id)
    return .with { $0.partner = partner }
  }

  func listPartners(
    request: Rapport_Gateway_V1_ListPartnersRequest, context: ServerContext
  ) async throws -> Rapport_Gateway_V1_ListPartnersResponse {
    let partners = try await store.partners()
    return .with { $0.partners = partners }
  }

  func disablePartner(
    request: Rapport_Gateway_V1_DisablePartnerRequest, context: ServerContext
  ) async throws -> Rapport_Gateway_V1_DisablePartnerResponse {
    let id = try Validate.uuid(request.partnerID, field: "partner_id")
    AuditLog.target("partner", request.partnerID)
    guard let partner = try await store.disable(id) else { throw RPCFailure.notFound("partner", request.partnerID) }
    return .with { $0.partner = partner }
  }

  func createKey(
    request: Rapport_Gateway_V1_CreateKeyRequest, context: ServerContext
  ) async throws -> Rapport_Gateway_V1_CreateKeyResponse {
    let partner = try Validate.uuid(request.partnerID, field: "partner_id")
    var expires: Date?
    if request.hasExpireTime {
      expires = try Validate.time(request.expireTime, isSet: true, field: "expire_time")
      guard let expires, expires > Date() else { throw RPCFailure.invalid("expire_time", "must be in the future") }
    }
    let key = KeyRecord(
      id: UUID(), partnerID: partner, secretHash: [], scopes: try AdminInput.scopes(request.scopes),
      companyIDs: try AdminInput.companies(request.companyIds),
      ratePerSecond: try AdminInput.limit(request.ratePerSecond, field: "rate_per_second", default: defaultRate),
      burst: try AdminInput.limit(request.burst, field: "burst", default: defaultBurst), expiresAt: expires,
      revokedAt: nil, createdAt: Date(), lastUsedAt: nil)
    AuditLog.target("partner", request.partnerID)
    let (stored, secret) = try await Self.issue(key, in: store)
    AuditLog.target("key", stored.id.uuidString.lowercased())
    return .with {
      $0.key = stored.proto
      $0.secret = secret
    }
  }

  /// Stores `key` with a fresh secret; returns the stored key and the secret (shown once).
  static func issue(_ key: KeyRecord, in store: PartnerStore) async throws -> (KeyRecord, String) {
    var key = key
    let secret = KeySecret.generate(id: key.id)
    key.secretHash = KeySecret.hash(secret)
    return (try await store.insert(key), secret)
  }

  func listKeys(
    request: Rapport_Gateway_V1_ListKeysRequest, context: ServerContext
  ) async throws -> Rapport_Gateway_V1_ListKeysResponse {
    let partner = try Validate.uuid(request.partnerID, field: "partner_id")
    let keys = try await store.keys(of: partner)
    return .with { $0.keys = keys.map(\.proto) }
  }

  func revokeKey(
    request: Rapport_Gateway_V1_RevokeKeyRequest, context: ServerContext
  ) async throws -> Rapport_Gateway_V1_RevokeKeyResponse {
    let id = try Validate.uuid(request.keyID, field: "key_id")
    AuditLog.target("key", request.keyID)
    guard let key = try await store.end(id, at: Date()) else { throw RPCFailure.notFound("key", request.keyID) }
    return .with { $0.key = key.proto }
  }

  func listAuditEntries(
    request: Rapport_Gateway_V1_ListAuditEntriesRequest, context: ServerContext
  ) async throws -> Rapport_Gateway_V1_ListAuditEntriesResponse {
    let partner = request.partnerID.isEmpty ? nil : try Validate.uuid(request.partnerID, field: "partner_id")
    let method = try Validate.optional(request.method, field: "method", max: 200)
    if request.hasCode, !(0...16).contains(request.code) {
      throw RPCFailure.invalid("code", "must be a gRPC status code, 0 to 16")
    }
    let since = try Validate.time(request.since, isSet: request.hasSince, field: "since")
    let limit = try Validate.pageSize(request.pageSize, default: 100, max: 1000)
    let entries = try await store.audit(
      partner: partner, method: method.isEmpty ? nil : method, code: request.hasCode ? Int(request.code) : nil,
      since: since, limit: limit)
    return .with { $0.entries = entries }
  }

  func rotateKey(
    request: Rapport_Gateway_V1_RotateKeyRequest, context: ServerContext
  ) async throws -> Rapport_Gateway_V1_RotateKeyResponse {
    let id = try Validate.uuid(request.keyID, field: "key_id")
    let now = Date()
    var end = now.addingTimeInterval(86_400)
    if request.hasOldKeyEndTime {
      // A time already past ends the old key now.
      if let requested = try Validate.time(request.oldKeyEndTime, isSet: true, field: "old_key_end_time") {
        end = max(requested, now)
      }
    }
    guard let old = try await store.key(id) else { throw RPCFailure.notFound("key", request.keyID) }
    guard old.isUsable(at: now) else { throw RPCFailure.failedPrecondition("the key is no longer valid") }
    if let expires = old.expiresAt { end = min(end, expires) }
    var new = old
    new.id = UUID()
    new.createdAt = now
    new.lastUsedAt = nil
    new.revokedAt = nil
    let secret = KeySecret.generate(id: new.id)
    new.secretHash = KeySecret.hash(secret)
    AuditLog.target("key", request.keyID)
    AuditLog.target("key", new.id.uuidString.lowercased())
    try await store.rotate(old, to: new, oldEnds: end)
    guard let ended = try await store.key(id), let stored = try await store.key(new.id) else {
      throw RPCFailure.internal("rotated keys not found")
    }
    return .with {
      $0.oldKey = ended.proto
      $0.newKey = stored.proto
      $0.newSecret = secret
    }
  }
}
