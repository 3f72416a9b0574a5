import Foundation
import GRPCCore
import GRPCProtobuf
import Logging
import RapportCore
import RapportProtos
import Synchronization

/// What a key may do: one scope per area and verb, plus `admin` for the operators' RPCs.
enum Scope: String, CaseIterable, Sendable {
  case customersRead = "customers:read", customersWrite = "customers:write"
  case ordersRead = "orders:read", ordersWrite = "orders:write"
  case ticketsRead = "tickets:read", ticketsWrite = "tickets:write"
  case viewsRead = "views:read"
  case admin
}

/// The verified key of the call being served (nil on anonymous calls while partner auth is off).
enum CallerKey {
  @TaskLocal static var current: KeyRecord?
}

/// The gateway's one check of every call (installed with the platform's interceptors): authenticates
/// `authorization: Bearer <key>` (missing, garbled, unknown, expired, revoked, or a disabled partner's
/// key → UNAUTHENTICATED, one message for all), authorises the method's scope (PERMISSION_DENIED), and
/// applies the key's token bucket (RESOURCE_EXHAUSTED with `google.rpc.RetryInfo`). Health needs no key.
struct PartnerAuth: ServerInterceptor {
  /// `off` lets partner RPCs be called without a key (a call that sends one is still checked); the
  /// admin service always needs an `admin` key.
  enum Mode: String, Sendable { case required, off }

  /// The scope each partner method needs; a gateway method missing here needs `admin`.
  static let scopes: [String: Scope] = [
    "GetCustomerView": Scope.viewsRead, "GetCustomer": .customersRead, "FindCustomer": .customersRead,
    "SearchCustomers": .customersRead,
    "GetOrder": .ordersRead, "ListOrders": .ordersRead, "GetTicket": .ticketsRead, "ListTickets": .ticketsRead,
    "ResolveCustomer": .customersWrite, "PlaceOrder": .ordersWrite, "RecordPayment": .ordersWrite,
    "FulfillOrder": .ordersWrite, "DeliverOrder": .ordersWrite, "OpenTicket": .ticketsWrite, "AddMessage": .ticketsWrite,
  ].reduce(into: [:]) { $0["rapport.gateway.v1.PartnerGateway/\($1.key)"] = $1.value }
  static let refusal = RPCError(code: .unauthenticated, message: "missing or invalid API key")
  /// Writes through the gateway: audited in the call's path, before the response.
  static let writes: Set<String> = Set(
    ["CreatePartner", "DisablePartner", "CreateKey", "RevokeKey", "RotateKey"].map { "rapport.gateway.v1.PartnerAdmin/\($0)" }
      + ["ResolveCustomer", "PlaceOrder", "RecordPayment", "FulfillOrder", "DeliverOrder", "OpenTicket", "AddMessage"]
      .map { "rapport.gateway.v1.PartnerGateway/\($0)" })

  let verifier: KeyVerifier
  let mode: Mode
  let audit: AuditLog

  func intercept<Input: Sendable, Output: Sendable>(
    request: StreamingServerRequest<Input>, context: ServerContext,
    next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
  ) async throws -> StreamingServerResponse<Output> {
    guard context.descriptor.service != Grpc_Health_V1_Health.descriptor else { return try await next(request, context) }
    let started = ContinuousClock.now
    let method = context.descriptor.fullyQualifiedMethod
    let scope = Self.scopes[method] ?? .admin
    let header = request.metadata[stringValues: "authorization"].first(where: { _ in true })
    if header == nil, mode == .off, scope != .admin { return try await next(request, context) }
    let key: KeyRecord
    do {
      key = try await verifier.verify(header)
    } catch {
      let named = header.flatMap { KeySecret.id(of: String($0.dropFirst("Bearer ".count))) }
      audit.record(AuditLog.entry(method: method, code: RPCError.Code.unauthenticated.rawValue, key: named, partner: nil, started: started))
      throw error
    }
    guard key.scopes.contains(scope.rawValue) else {
      audit.record(AuditLog.entry(method: method, code: RPCError.Code.permissionDenied.rawValue, key: key.id, partner: key.partnerID, started: started))
      throw RPCError(code: .permissionDenied, message: "this key lacks the scope \(scope.rawValue)")
    }
    if let wait = verifier.limiter.take(key) {
      throw GoogleRPCStatus(
        code: .resourceExhausted, message: "rate limit of this key exceeded; retry later",
        details: [.retryInfo(delay: wait)])
    }
    guard Self.writes.contains(method) else {
      return try await CallerKey.$current.withValue(key) { try await next(request, context) }
    }
    var code = 0
    let targets = AuditLog.Targets()
    let response: StreamingServerResponse<Output>
    do {
      response = try await CallerKey.$current.withValue(key) {
        try await AuditLog.$targets.withValue(targets) { try await next(request, context) }
      }
      if case .failure(let error) = response.accepted { code = error.code.rawValue }
    } catch {
      code = (error as? RPCError)?.code.rawValue ?? (error as? any RPCErrorConvertible)?.rpcErrorCode.rawValue
        ?? RPCError.Code.unknown.rawValue
      try await audit.write(
        AuditLog.entry(method: method, code: code, key: key.id, partner: key.partnerID, started: started, targets: targets.all))
      throw error
    }
    try await audit.write(
      AuditLog.entry(method: method, code: code, key: key.id, partner: key.partnerID, started: started, targets: targets.all))
    return response
  }
}

/// Checks presented keys against their stored hashes. Verified keys are cached for at most `freshness`
/// (1 s), so a revocation or a disabled partner takes effect within that on every replica without any
/// message between them.
final class KeyVerifier: Sendable {
  let store: PartnerStore
  let limiter = RateLimiter()
  private let freshness: Duration
  private let cache = Mutex<[UUID: (key: KeyRecord, fetched: ContinuousClock.Instant)]>([:])
  private let used = Mutex<Set<UUID>>([])

  init(store: PartnerStore, freshness: Duration = .seconds(1)) {
    self.store = store
    self.freshness = freshness
  }

  /// The key an `authorization` header carries; UNAUTHENTICATED (one message) for anything else.
  func verify(_ header: String?) async throws -> KeyRecord {
    guard let header, header.hasPrefix("Bearer ") else { throw PartnerAuth.refusal }
    let presented = String(header.dropFirst("Bearer ".count))
    guard let id = KeySecret.id(of: presented) else { throw PartnerAuth.refusal }
    let hash = KeySecret.hash(presented)
    let now = ContinuousClock.now
    var key = cache.withLock { $0[id] }.flatMap { now - $0.fetched < freshness ? $0.key : nil }
    if key == nil {
      key = try await store.key(id)
      if let key { cache.withLock { $0[id] = (key, now) } }
    }
    guard let key, KeySecret.same(key.secretHash, hash), key.isUsable(at: Date()) else { throw PartnerAuth.refusal }
    used.withLock { _ = $0.insert(key.id) }
    return key
  }

  /// Writes the keys used since the last call as used now (a periodic worker calls it every minute).
  func flushUsage() async throws {
    let ids = used.withLock { ids in
      defer { ids.removeAll() }
      return Array(ids)
    }
    try await store.touch(ids, at: Date())
  }
}

/// One token bucket per key, held exactly under a lock: of N parallel calls against a bucket holding B
/// tokens, exactly B pass (plus what refills meanwhile at the key's rate).
final class RateLimiter: Sendable {
  private struct Bucket {
    var tokens: Double
    var updated: ContinuousClock.Instant
  }

  private let buckets = Mutex<[UUID: Bucket]>([:])

  /// Takes one token from the key's bucket; nil when admitted, else how long until a token is back.
  func take(_ key: KeyRecord, at now: ContinuousClock.Instant = .now) -> Duration? {
    let rate = Double(max(key.ratePerSecond, 1)), burst = Double(max(key.burst, 1))
    return buckets.withLock { buckets in
      var bucket = buckets[key.id] ?? Bucket(tokens: burst, updated: now)
      let elapsed = now - bucket.updated
      let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
      bucket.tokens = min(burst, bucket.tokens + max(seconds, 0) * rate)
      bucket.updated = now
      defer { buckets[key.id] = bucket }
      guard bucket.tokens >= 1 else { return .milliseconds(Int64(((1 - bucket.tokens) / rate * 1000).rounded(.up))) }
      bucket.tokens -= 1
      return nil
    }
  }
}
