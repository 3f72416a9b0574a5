import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos
import Synchronization

/// The gateway's audit log (`gateway.audit_log`): who called what, how it ended, how long it took — key
/// ids, never keys, and no personal data. Refusals are buffered and written in batches (a flood of bad
/// keys costs one insert per batch, and never slows the refused call); writes are recorded before their
/// response is sent, so no acknowledged write goes unaudited.
final class AuditLog: Sendable {
  let store: PartnerStore
  /// Refusals kept while the database is slow; past this, new ones are counted and dropped.
  let capacity: Int
  private let pending = Mutex<(entries: [Rapport_Gateway_V1_AuditEntry], dropped: Int)>(([], 0))

  init(store: PartnerStore, capacity: Int = 10_000) {
    self.store = store
    self.capacity = capacity
  }

  /// Queues a refusal for the next batch.
  func record(_ entry: Rapport_Gateway_V1_AuditEntry) {
    pending.withLock {
      if $0.entries.count < capacity { $0.entries.append(entry) } else { $0.dropped += 1 }
    }
  }

  /// Writes an entry now (writes: in the call's path, before its response).
  func write(_ entry: Rapport_Gateway_V1_AuditEntry) async throws {
    try await store.insertAudit([entry])
  }

  /// Writes the queued refusals (a periodic worker calls it); on failure they stay queued.
  func flush(logger: Logger) async throws {
    let (batch, dropped) = pending.withLock { state in
      defer { state = ([], 0) }
      return state
    }
    if dropped > 0 { logger.warning("audit buffer full; refusals not recorded", metadata: ["dropped": "\(dropped)"]) }
    guard !batch.isEmpty else { return }
    do {
      try await store.insertAudit(batch)
    } catch {
      pending.withLock { $0.entries = Array((batch + $0.entries).prefix(capacity)) }
      throw error
    }
  }

  /// The ids a write names, collected by its handler (`AuditLog.target`) for its audit entry.
  final class Targets: Sendable {
    private let ids = Mutex<[String]>([])
    var all: [String] { ids.withLock { $0 } }
    func add(_ kind: String, _ id: String) { if !id.isEmpty { ids.withLock { $0.append("\(kind):\(id)") } } }
  }

  @TaskLocal static var targets: Targets?

  /// Records that the current write names `id` (a no-op outside an audited write).
  static func target(_ kind: String, _ id: String) { targets?.add(kind, id) }

  /// One entry for a call to `method` that ended with `code`.
  static func entry(
    method: String, code: Int, key: UUID?, partner: UUID?, started: ContinuousClock.Instant, targets: [String] = []
  ) -> Rapport_Gateway_V1_AuditEntry {
    .with {
      $0.targetIds = targets
      $0.time = .init(microsecondsOf: Date())
      $0.keyID = key?.uuidString.lowercased() ?? ""
      $0.partnerID = partner?.uuidString.lowercased() ?? ""
      $0.method = method
      $0.code = Int32(code)
      $0.requestID = RequestID.current ?? ""
      let elapsed = ContinuousClock.now - started
      $0.latencyMicros = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
    }
  }
}

extension Rapport_Gateway_V1_AuditEntry {
  /// The columns `init(row:)` reads, in its order.
  static let columns = "at, key_id, partner_id, method, code, request_id, latency_micros, target_ids"

  init(row: PostgresRow) throws {
    var r = RowReader(row)
    self.init()
    time = .init(microsecondsOf: try r.next(Date.self))
    keyID = try r.next(UUID?.self)?.uuidString.lowercased() ?? ""
    partnerID = try r.next(UUID?.self)?.uuidString.lowercased() ?? ""
    method = try r.next()
    code = Int32(try r.next(Int.self))
    requestID = try r.next()
    latencyMicros = try r.next()
    targetIds = try r.next()
  }
}

extension PartnerStore {
  func insertAudit(_ entries: [Rapport_Gateway_V1_AuditEntry]) async throws {
    try await client.query(
      """
      INSERT INTO gateway.audit_log (at, key_id, partner_id, method, code, request_id, latency_micros, target_ids)
      SELECT e.at, NULLIF(e.key_id, '')::uuid, NULLIF(e.partner_id, '')::uuid, e.method, e.code, e.request_id, e.latency,
        CASE WHEN e.targets = '' THEN '{}'::text[] ELSE string_to_array(e.targets, ' ') END
      FROM unnest(\(entries.map(\.time.date))::timestamptz[], \(entries.map(\.keyID))::text[],
        \(entries.map(\.partnerID))::text[], \(entries.map(\.method))::text[], \(entries.map { Int($0.code) })::int8[],
        \(entries.map(\.requestID))::text[], \(entries.map(\.latencyMicros))::int8[],
        \(entries.map { $0.targetIds.joined(separator: " ") })::text[])
        AS e(at, key_id, partner_id, method, code, request_id, latency, targets)
      """, logger: logger)
  }

  /// Entries newest first, filtered.
  func audit(
    partner: UUID?, method: String?, code: Int?, since: Date?, limit: Int
  ) async throws -> [Rapport_Gateway_V1_AuditEntry] {
    let rows = try await client.query(
      """
      SELECT \(unescaped: Rapport_Gateway_V1_AuditEntry.columns) FROM gateway.audit_log
      WHERE (\(partner)::uuid IS NULL OR partner_id = \(partner))
        AND (\(method)::text IS NULL OR method = \(method))
        AND (\(code)::int8 IS NULL OR code = \(code))
        AND (\(since)::timestamptz IS NULL OR at >= \(since))
      ORDER BY at DESC, id DESC LIMIT \(limit)
      """, logger: logger)
    var result: [Rapport_Gateway_V1_AuditEntry] = []
    for try await row in rows { result.append(try .init(row: row)) }
    return result
  }

  /// Deletes entries older than `cutoff` (retention).
  func pruneAudit(before cutoff: Date) async throws {
    try await client.query("DELETE FROM gateway.audit_log WHERE at < \(cutoff)", logger: logger)
  }
}
