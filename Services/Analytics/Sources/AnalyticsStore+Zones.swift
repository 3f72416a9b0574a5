import Foundation
import PostgresNIO
import RapportCore

/// A time zone the sales periods and cohort cells are kept in (`analytics.kept_zones`, docs/ANALYTICS.md,
/// "Sales"): UTC always, and the shop's reporting zone (`report-time-zone`). Sales summaries and cohorts
/// in a kept zone take their whole periods from the kept rows; in any other zone they are derived from the
/// nearest kept zone's (a name this type admits is also what those derived reads need).
struct KeptZone: Hashable, Comparable, Sendable {
  let identifier: String
  private let timeZone: TimeZone

  static let utc = KeptZone("UTC")!

  /// nil unless an IANA name Foundation knows, spelled with letters, digits and `/_+-` only (so that
  /// `sqlLiteral` is a safe SQL literal).
  init?(_ identifier: String) {
    guard (1...64).contains(identifier.utf8.count),
      identifier.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "/_+-".unicodeScalars.contains($0)) }),
      let timeZone = TimeZone(identifier: identifier)
    else { return nil }
    self.identifier = identifier
    self.timeZone = timeZone
  }

  /// The zone as a SQL string literal (the characters `init` admits need no escaping).
  var sqlLiteral: String { "'\(identifier)'" }

  /// The starts of the day, week (from Monday) and month of `date` in this zone, in `UTCPeriod.allCases`
  /// order, as PostgreSQL's `date_trunc(unit, t, zone)` cuts them: the local wall time is cut with
  /// `UTCPeriod`'s arithmetic and the local midnight found turned back into an instant.
  func starts(of date: Date) -> [Date] {
    if identifier == "UTC" { return UTCPeriod.starts(of: date) }
    let local = date.addingTimeInterval(Double(timeZone.secondsFromGMT(for: date)))
    return UTCPeriod.starts(of: local).map(instant(atWallTime:))
  }

  /// The instant whose wall time here is `wall` (a wall time read as UTC). The offset in force is guessed
  /// from the one at `wall` read as an instant, then taken at the guess. A wall time the clocks skipped
  /// (a midnight where summer time starts) is read with the offset before the change, as PostgreSQL
  /// reads it: the first instant of that day.
  private func instant(atWallTime wall: Date) -> Date {
    let first = timeZone.secondsFromGMT(for: wall)
    let second = timeZone.secondsFromGMT(for: wall.addingTimeInterval(-Double(first)))
    let candidate = wall.addingTimeInterval(-Double(second))
    if timeZone.secondsFromGMT(for: candidate) == second { return candidate }
    return wall.addingTimeInterval(-Double(min(first, second)))
  }

  /// How far apart this zone's clocks and `other`'s are over [from, to): the mean of the absolute
  /// difference of their UTC offsets, in seconds, at 24 instants spread over the range.
  func offsetDistance(to other: KeptZone, from: Date, to: Date) -> Double {
    let span = max(to.timeIntervalSince(from), 0)
    let instants = (0..<24).map { from.addingTimeInterval(span * (Double($0) + 0.5) / 24) }
    return instants.reduce(0) { $0 + Double(abs(timeZone.secondsFromGMT(for: $1) - other.timeZone.secondsFromGMT(for: $1))) } / 24
  }

  static func == (a: KeptZone, b: KeptZone) -> Bool { a.identifier == b.identifier }
  func hash(into hasher: inout Hasher) { hasher.combine(identifier) }
  static func < (a: KeptZone, b: KeptZone) -> Bool { a.identifier < b.identifier }
}

extension AnalyticsStore {
  /// Changes to orders hold this lock shared while they move the kept rows; building or dropping a zone
  /// holds it alone (transaction-scoped).
  static let keptZonesLock = Migrator.lockKey("analytics.kept_zones")

  /// The zones kept, read after taking `keptZonesLock` shared for the rest of the transaction: a zone
  /// built meanwhile is either in the list, or its build waits for this transaction and then reads it.
  func keptZones(sharing connection: PostgresConnection) async throws -> [KeptZone] {
    try await connection.query("SELECT pg_advisory_xact_lock_shared(\(Self.keptZonesLock)::int8)", logger: logger)
    return try await keptZoneNames(on: connection).compactMap(KeptZone.init)
  }

  private func keptZoneNames(on connection: PostgresConnection) async throws -> [String] {
    let rows = try await connection.query("SELECT zone FROM analytics.kept_zones ORDER BY zone", logger: logger)
    var names: [String] = []
    for try await name in rows.decode(String.self) { names.append(name) }
    return names
  }

  /// The kept zone `zone`'s sales periods and cohort cells are read from for [from, to): `zone` itself
  /// when it is kept; otherwise the kept zone whose clocks are nearest to it over the range (UTC on a
  /// tie), from which they are derived — the nearer, the fewer orders the derivation reads (none between
  /// zones with the same clocks, such as Europe/Paris and Europe/Berlin).
  func derivationBase(for zone: KeptZone, from: Date, to: Date) async throws -> KeptZone {
    let kept = try await client.withConnection { try await keptZoneNames(on: $0) }.compactMap(KeptZone.init)
    if kept.contains(zone) { return zone }
    let ranked = kept.map { (distance: zone.offsetDistance(to: $0, from: from, to: to), notUTC: $0 != .utc, zone: $0) }
    return ranked.min { ($0.distance, $0.notUTC ? 1 : 0, $0.zone.identifier) < ($1.distance, $1.notUTC ? 1 : 0, $1.zone.identifier) }?.zone ?? .utc
  }

  /// `name` when the sales periods and cohort cells are kept in it.
  func keptZone(_ name: String) async throws -> KeptZone? {
    let rows = try await client.query("SELECT zone FROM analytics.kept_zones WHERE zone = \(name)", logger: logger)
    for try await found in rows.decode(String.self) { return KeptZone(found) }
    return nil
  }

  /// Keeps the sales periods and cohort cells in UTC and `zones`, and in no other zone: a zone not kept
  /// yet is computed from the orders, with every change to orders waiting for it; a zone no longer
  /// wanted is dropped. One read when nothing changes.
  func keepZones(_ zones: [KeptZone]) async throws {
    let wanted = Set(zones + [.utc])
    let names = try await client.withConnection { try await keptZoneNames(on: $0) }
    guard Set(names) != Set(wanted.map(\.identifier)) else { return }
    try await client.transaction(logger: logger) { connection in
      try await connection.query("SELECT pg_advisory_xact_lock(\(Self.keptZonesLock)::int8)", logger: logger)
      let kept = Set(try await keptZoneNames(on: connection))
      for zone in wanted.sorted() where !kept.contains(zone.identifier) {
        try await connection.query(
          """
          INSERT INTO analytics.sales_periods (zone, unit, period, currency, channel, orders, net_minor, active, new)
          SELECT \(zone.identifier), s.* FROM (\(unescaped: Self.salesPeriodsSQL(where: "true", zone: zone))) s
          """, logger: logger)
        try await connection.query(
          """
          INSERT INTO analytics.cohort_cells (zone, cohort, month, customers)
          SELECT \(zone.identifier), c.* FROM (\(unescaped: Self.cohortCellsSQL(where: "true", zone: zone))) c
          """, logger: logger)
        try await connection.query("INSERT INTO analytics.kept_zones (zone) VALUES (\(zone.identifier))", logger: logger)
        logger.info("sales periods and cohort cells kept in a new zone", metadata: ["zone": "\(zone.identifier)"])
      }
      for name in kept.sorted() where !wanted.contains(where: { $0.identifier == name }) {
        try await connection.query("DELETE FROM analytics.sales_periods WHERE zone = \(name)", logger: logger)
        try await connection.query("DELETE FROM analytics.cohort_cells WHERE zone = \(name)", logger: logger)
        try await connection.query("DELETE FROM analytics.kept_zones WHERE zone = \(name)", logger: logger)
        logger.info("sales periods and cohort cells no longer kept in a zone", metadata: ["zone": "\(name)"])
      }
    }
  }
}
