import Foundation
import PostgresNIO
import RapportCore
import Synchronization

/// A time zone the sales periods and cohort cells are kept in (`analytics.kept_zones`, docs/ANALYTICS.md,
/// "Sales"): UTC always, the shop's reporting zones (`report-time-zones`), and zones reads asked for
/// (learned: `keepLearnedZones`). Sales summaries and cohorts
/// in a kept zone take their whole periods from the kept rows; in any other zone they are derived from the
/// nearest kept zone's (a name this type admits is also what those derived reads need).
struct KeptZone: Hashable, Comparable, Sendable {
  let identifier: String
  private let timeZone: TimeZone
  /// The zone's local days cut so far, shared by every `KeptZone` of the same name.
  private let days: LocalDays

  static let utc = KeptZone("UTC")!

  /// One zone per clock of tzdata whose UTC offset is not a whole number of hours (kept with
  /// `sub-hour-time-zones`). Any other zone's periods are derived from the kept zone with the nearest
  /// clocks, from `analytics.sales_hours` when every boundary of both is a whole UTC hour; a zone a half
  /// or a quarter hour off every kept one would be derived from its orders near every boundary instead
  /// (seconds a year of days at a million orders). With these kept, every zone of tzdata has a kept zone
  /// with the same clocks (Asia/Colombo: Asia/Kolkata's; Australia/Broken_Hill: Australia/Adelaide's)
  /// or a whole number of hours from one. A test checks that against the tzdata the build has.
  static let subHour = [
    "America/St_Johns", "Asia/Kabul", "Asia/Kathmandu", "Asia/Kolkata", "Asia/Tehran", "Asia/Yangon", "Australia/Adelaide",
    "Australia/Darwin", "Australia/Eucla", "Australia/Lord_Howe", "Pacific/Chatham", "Pacific/Marquesas",
  ].map { KeptZone($0)! }

  /// nil unless an IANA name Foundation knows, spelled with letters, digits and `/_+-` only (so that
  /// `sqlLiteral` is a safe SQL literal).
  init?(_ identifier: String) {
    guard (1...64).contains(identifier.utf8.count),
      identifier.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "/_+-".unicodeScalars.contains($0)) }),
      let timeZone = TimeZone(identifier: identifier)
    else { return nil }
    self.identifier = identifier
    self.timeZone = timeZone
    self.days = LocalDays.of(identifier)
  }

  /// The zone as a SQL string literal (the characters `init` admits need no escaping).
  var sqlLiteral: String { "'\(identifier)'" }

  /// The starts of the day, week (from Monday) and month of `date` in this zone, in `UTCPeriod.allCases`
  /// order, as PostgreSQL's `date_trunc(unit, t, zone)` cuts them: the local wall time is cut with
  /// `UTCPeriod`'s arithmetic and the local midnight found turned back into an instant.
  /// The local day of `date` is cut once (`cut`, a few dozen offset lookups in the zone's rules) and
  /// then found in `days`: this runs for every order of every customer a change touches, in every kept
  /// zone. A day that is not one interval of instants (the day before Havana's midnight passed twice
  /// ends after the first pass of it, where the next day, read at the later pass, has not started) is
  /// cut every time.
  func starts(of date: Date) -> [Date] {
    if identifier == "UTC" { return UTCPeriod.starts(of: date) }
    if let day = days.day(containing: date.timeIntervalSince1970) { return day.starts }
    let starts = cut(date)
    // The day ends where the next one starts: the one of an instant 36 hours on (days last 23 to 25
    // hours; a skipped date, as Apia's 30 December 2011, makes the next day start a day later).
    // Kept only when the second before that still lies in this day (so the day is one interval).
    let end = cut(starts[0].addingTimeInterval(36 * 3_600))[0]
    if end > starts[0], end > date, cut(end.addingTimeInterval(-1))[0] == starts[0] {
      days.insert(LocalDays.Day(from: starts[0].timeIntervalSince1970, to: end.timeIntervalSince1970, starts: starts))
    }
    return starts
  }

  /// `starts(of:)` from the zone's rules.
  private func cut(_ date: Date) -> [Date] {
    let local = date.addingTimeInterval(Double(timeZone.secondsFromGMT(for: date)))
    return UTCPeriod.starts(of: local).map(instant(atWallTime:))
  }

  /// The instant whose wall time here is `wall` (a wall time read as UTC), as PostgreSQL reads a local
  /// time: the offsets in force within a day of `wall` read as an instant are tried, and of the instants
  /// that give `wall` back, the later one is taken (a wall time the clocks passed twice: Havana's
  /// midnight when summer time ends at 01:00, whichever side of UTC the zone lies). A wall time the
  /// clocks skipped (a midnight where summer time starts) is read with the offset before the change:
  /// the first instant of that day.
  private func instant(atWallTime wall: Date) -> Date {
    let offsets = Set([-86_400.0, -43_200, 0, 43_200, 86_400].map { timeZone.secondsFromGMT(for: wall.addingTimeInterval($0)) })
    let readings = offsets.map { wall.addingTimeInterval(-Double($0)) }.filter {
      Double(timeZone.secondsFromGMT(for: $0)) == wall.timeIntervalSince($0)
    }
    if let later = readings.max() { return later }
    let first = timeZone.secondsFromGMT(for: wall)
    let second = timeZone.secondsFromGMT(for: wall.addingTimeInterval(-Double(first)))
    return wall.addingTimeInterval(-Double(min(first, second)))
  }

  /// How far apart this zone's clocks and `other`'s are over [from, to), at 24 instants spread over the
  /// range: at how many of them the difference of their UTC offsets is not a whole number of hours
  /// (`offHour`), and its mean absolute value in seconds (`mean`).
  func offsetDistance(to other: KeptZone, from: Date, to: Date) -> (offHour: Int, mean: Double) {
    let span = max(to.timeIntervalSince(from), 0)
    let differences = (0..<24).map { n in
      let instant = from.addingTimeInterval(span * (Double(n) + 0.5) / 24)
      return abs(timeZone.secondsFromGMT(for: instant) - other.timeZone.secondsFromGMT(for: instant))
    }
    return (differences.count { $0 % 3600 != 0 }, Double(differences.reduce(0, +)) / 24)
  }

  /// The start of the local month of `date`.
  func monthStart(of date: Date) -> Date { starts(of: date)[2] }

  /// The start of the local month after the one starting at `start`.
  func monthStart(after start: Date) -> Date { monthStart(of: start.addingTimeInterval(32 * 86_400)) }

  static func == (a: KeptZone, b: KeptZone) -> Bool { a.identifier == b.identifier }
  func hash(into hasher: inout Hasher) { hasher.combine(identifier) }
  static func < (a: KeptZone, b: KeptZone) -> Bool { a.identifier < b.identifier }
}

/// The local days of a zone `KeptZone.starts(of:)` has cut, with the starts of their day, week and
/// month: per UTC day (days since 1970), the local days that overlap it. One per zone name, for the
/// life of the process; emptied past `limit` days (about 270 years of one zone's).
final class LocalDays: Sendable {
  struct Day: Sendable {
    /// [from, to): the day's instants, in seconds since 1970.
    let from: Double, to: Double
    let starts: [Date]
  }

  private let days = Mutex<[Int: [Day]]>([:])
  static let limit = 100_000
  private static let zones = Mutex<[String: LocalDays]>([:])

  static func of(_ identifier: String) -> LocalDays {
    zones.withLock { zones in
      if let days = zones[identifier] { return days }
      let days = LocalDays()
      zones[identifier] = days
      return days
    }
  }

  private static func utcDay(_ seconds: Double) -> Int { Int((seconds / 86_400).rounded(.down)) }

  func day(containing seconds: Double) -> Day? {
    days.withLock { $0[Self.utcDay(seconds)]?.first { $0.from <= seconds && seconds < $0.to } }
  }

  func insert(_ day: Day) {
    days.withLock { days in
      if days.count >= Self.limit { days = [:] }
      for utcDay in Self.utcDay(day.from)...Self.utcDay(day.to - 1) where !(days[utcDay]?.contains { $0.from == day.from } ?? false) {
        days[utcDay, default: []].append(day)
      }
    }
  }
}

/// A row of `analytics.kept_zones`.
struct KeptZoneRow: Sendable {
  let zone: KeptZone
  /// Kept because reads asked for it, not configured (`report-time-zones`).
  let learned: Bool
  /// While the zone is being built: its rows are computed for the local months before this (oldest
  /// first); nil once they all are.
  let builtUntil: Date?
  let readAt: Date

  var ready: Bool { builtUntil == nil }
}

/// The zones reads asked for since the last `keepLearnedZones`, shared by a process's stores: the RPCs'
/// store notes them, the workers' store learns them.
final class ZoneRequests: Sendable {
  private let asked = Mutex<Set<KeptZone>>([])

  func note(_ zone: KeptZone) {
    guard zone != .utc else { return }
    _ = asked.withLock { $0.insert(zone) }
  }

  func drain() -> [KeptZone] { asked.withLock { asked in defer { asked = [] }; return asked.sorted() } }
}

extension AnalyticsStore {
  /// Changes to orders hold this lock shared while they move the kept rows, and so do builds of a local
  /// month of a learned zone; adding or dropping a zone holds it alone (transaction-scoped).
  static let keptZonesLock = Migrator.lockKey("analytics.kept_zones")

  /// How long a learned zone stays kept without a read asking for it.
  static let learnedZoneIdle: TimeInterval = 30 * 86_400

  /// The lock of a local month of a zone being built: the build holds it alone; a change that moves
  /// rows of that month (not built yet when it looked) holds it shared (`withoutUnbuilt`).
  static func monthLock(_ zone: KeptZone, _ start: Date) -> Int64 {
    Migrator.lockKey("analytics.kept_zones \(zone.identifier) \(Int64(start.timeIntervalSince1970))")
  }

  /// The zones kept (ready or being built), read after taking `keptZonesLock` shared for the rest of
  /// the transaction: a zone added meanwhile is either in the list, or its addition waits for this
  /// transaction.
  func keptZones(sharing connection: PostgresConnection) async throws -> [KeptZoneRow] {
    try await connection.query("SELECT pg_advisory_xact_lock_shared(\(Self.keptZonesLock)::int8)", logger: logger)
    return try await zoneRows(on: connection)
  }

  /// Every row of `analytics.kept_zones`, UTC first, then by name.
  func zoneRows(on connection: PostgresConnection) async throws -> [KeptZoneRow] {
    let rows = try await connection.query(
      "SELECT zone, learned, built_until, read_at FROM analytics.kept_zones ORDER BY zone <> 'UTC', zone", logger: logger)
    var kept: [KeptZoneRow] = []
    for try await (name, learned, builtUntil, readAt) in rows.decode((String, Bool, Date?, Date).self) {
      if let zone = KeptZone(name) { kept.append(KeptZoneRow(zone: zone, learned: learned, builtUntil: builtUntil, readAt: readAt)) }
    }
    return kept
  }

  func zoneRows() async throws -> [KeptZoneRow] { try await client.withConnection { try await zoneRows(on: $0) } }

  /// The kept zone `zone`'s sales periods and cohort cells are read from for [from, to): `zone` itself
  /// when it is kept and ready; otherwise the ready zone whose clocks are nearest to it over the range
  /// (UTC on a tie), from which they are derived — the nearer, the fewer orders the derivation reads
  /// (none between zones with the same clocks, such as Europe/Paris and Europe/Berlin). Nearest among
  /// those a whole number of hours away first: the periods of those are derived from the hour rows
  /// (`analytics.sales_hours`), which a zone a half hour nearer but off the hour cannot be (New York's
  /// from UTC, not from St. John's). Notes the zone as asked for (`keepLearnedZones`).
  func derivationBase(for zone: KeptZone, from: Date, to: Date) async throws -> KeptZone {
    zoneRequests.note(zone)
    let kept = try await zoneRows().filter(\.ready).map(\.zone)
    if kept.contains(zone) { return zone }
    let ranked = kept.map { (distance: zone.offsetDistance(to: $0, from: from, to: to), notUTC: $0 != .utc, zone: $0) }
    return ranked.min {
      ($0.distance.offHour, $0.distance.mean, $0.notUTC ? 1 : 0, $0.zone.identifier)
        < ($1.distance.offHour, $1.distance.mean, $1.notUTC ? 1 : 0, $1.zone.identifier)
    }?.zone ?? .utc
  }

  /// SQL: the kept zones other than UTC whose clocks pass a local midnight twice within two days of the
  /// orders' span (the later reading of that midnight, less a half hour, an hour or two, has the same
  /// wall time).
  static let zonesPassingAMidnightTwiceSQL = """
    SELECT k.zone FROM analytics.kept_zones k
    CROSS JOIN (SELECT min(placed_at)::date - 2 AS first, max(placed_at)::date + 2 AS last FROM analytics.orders) span
    CROSS JOIN LATERAL generate_series(span.first::timestamp, span.last::timestamp, interval '1 day') AS w(wall)
    WHERE k.zone <> 'UTC' AND EXISTS (
      SELECT 1 FROM unnest(ARRAY[interval '30 minutes', interval '1 hour', interval '2 hours']) AS s(shift)
      WHERE ((w.wall AT TIME ZONE k.zone) - s.shift) AT TIME ZONE k.zone = w.wall)
    """

  /// `read` of the rows of the kept zone `zone`'s reads take (`derivationBase`), and again, with the
  /// base chosen anew, when that base stopped being kept meanwhile (a learned zone dropped, a configured
  /// one no longer wanted): its rows may have been deleted under the read. The third try reads UTC's,
  /// which are always kept.
  func withDerivationBase<Result>(for zone: KeptZone, from: Date, to: Date, _ read: (KeptZone) async throws -> Result)
    async throws -> Result
  {
    var attempt = 0
    while true {
      let base = attempt < 2 ? try await derivationBase(for: zone, from: from, to: to) : .utc
      let result = try await read(base)
      if base == .utc { return result }
      if try await zoneRows().contains(where: { $0.zone == base && $0.ready }) { return result }
      logger.info("a kept zone was dropped during a read; read again", metadata: ["zone": "\(base.identifier)"])
      attempt += 1
    }
  }

  /// `name` when the sales periods and cohort cells are kept in it and ready.
  func keptZone(_ name: String) async throws -> KeptZone? {
    try await zoneRows().first { $0.zone.identifier == name && $0.ready }?.zone
  }

  /// Keeps the sales periods and cohort cells in UTC, `zones` and `building` (configured), and in learned
  /// zones: a zone of `zones` not kept yet is computed from the orders, with every change to orders
  /// waiting for it; one of `building` is built in the background like a learned zone
  /// (`keepLearnedZones`); one kept as learned becomes configured; a configured zone no longer wanted is
  /// dropped. One read when nothing changes.
  func keepZones(_ zones: [KeptZone], building: [KeptZone] = []) async throws {
    let wanted = Set(zones + building + [.utc])
    func settled(_ rows: [KeptZoneRow]) -> Bool {
      wanted.allSatisfy { zone in rows.contains { $0.zone == zone && !$0.learned } }
        && rows.allSatisfy { $0.learned || wanted.contains($0.zone) }
    }
    guard !settled(try await zoneRows()) else { return }
    try await client.transaction(logger: logger) { connection in
      try await connection.query("SELECT pg_advisory_xact_lock(\(Self.keptZonesLock)::int8)", logger: logger)
      let rows = try await zoneRows(on: connection)
      for zone in wanted.sorted() {
        if rows.contains(where: { $0.zone == zone }) {
          try await connection.query(
            "UPDATE analytics.kept_zones SET learned = false WHERE zone = \(zone.identifier) AND learned", logger: logger)
          continue
        }
        if !zones.contains(zone) && zone != .utc {
          try await startBuilding(zone, learned: false, now: Date(), on: connection)
          continue
        }
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
      try await drop(rows.filter { !$0.learned && !wanted.contains($0.zone) }.map(\.zone), on: connection)
    }
  }

  /// Drops the kept rows of `zones`; the caller holds `keptZonesLock` alone.
  private func drop(_ zones: [KeptZone], on connection: PostgresConnection) async throws {
    for zone in zones {
      try await connection.query("DELETE FROM analytics.sales_periods WHERE zone = \(zone.identifier)", logger: logger)
      try await connection.query("DELETE FROM analytics.cohort_cells WHERE zone = \(zone.identifier)", logger: logger)
      try await connection.query("DELETE FROM analytics.kept_zones WHERE zone = \(zone.identifier)", logger: logger)
      logger.info("sales periods and cohort cells no longer kept in a zone", metadata: ["zone": "\(zone.identifier)"])
    }
  }

  /// Learned zones (docs/ANALYTICS.md, "Sales"): records which learned zones reads asked for since the
  /// last call (`zoneRequests`); drops learned zones no read asked for in `learnedZoneIdle`, and the least
  /// recently read past `limit`; starts
  /// keeping each zone asked for that is not kept while fewer than `limit` are learned; and builds every
  /// zone not ready, a local month per transaction. A month being built holds back only the changes to
  /// orders that move its rows: the history's months do not hold back new orders, the current one does,
  /// for as long as its build takes.
  func keepLearnedZones(limit: Int, now: Date = Date()) async throws {
    try await learnAskedZones(limit: limit, now: now)
    for row in try await zoneRows() where !row.ready {
      while try await buildMonth(of: row.zone, now: now) {}
    }
  }

  /// `keepLearnedZones` but the builds: the zones asked for are recorded, kept (not built yet) or dropped.
  func learnAskedZones(limit: Int, now: Date = Date()) async throws {
    let asked = zoneRequests.drain()
    if !asked.isEmpty {
      try await client.query(
        "UPDATE analytics.kept_zones SET read_at = \(now) WHERE learned AND zone = ANY(\(asked.map(\.identifier))::text[])",
        logger: logger)
    }
    // The learned zones to drop (not read within `learnedZoneIdle`, or past `limit`, least recently
    // read first) and the zones asked for to add while there is room.
    func plan(_ rows: [KeptZoneRow]) -> (drop: [KeptZone], add: [KeptZone]) {
      let learned = rows.filter(\.learned).sorted { ($0.readAt, $1.zone) > ($1.readAt, $0.zone) }
      let idle = learned.enumerated().filter { $0.offset >= limit || now.timeIntervalSince($0.element.readAt) > Self.learnedZoneIdle }
        .map(\.element.zone)
      let room = max(0, limit - (learned.count - idle.count))
      return (idle, Array(asked.filter { zone in !rows.contains { $0.zone == zone } }.prefix(room)))
    }
    // Planned without the lock (every pass), done under it (when there is something to do): replicas
    // learning at the same time do not add a zone twice.
    guard case let planned = plan(try await zoneRows()), !planned.drop.isEmpty || !planned.add.isEmpty else { return }
    try await client.transaction(logger: logger) { connection in
      try await connection.query("SELECT pg_advisory_xact_lock(\(Self.keptZonesLock)::int8)", logger: logger)
      let (idle, fresh) = plan(try await zoneRows(on: connection))
      try await drop(idle, on: connection)
      for zone in fresh { try await startBuilding(zone, learned: true, now: now, on: connection) }
    }
  }

  /// Keeps `zone` from now on, not ready: `keepLearnedZones` builds it a local month at a time. Built
  /// from the month of the oldest order's week (a week can start in the month before); an order placed
  /// before that later is a change like any other (its months count as built: nothing was there). The
  /// caller holds `keptZonesLock` alone.
  private func startBuilding(_ zone: KeptZone, learned: Bool, now: Date, on connection: PostgresConnection) async throws {
    var oldest: Date? = nil
    for try await first in try await connection.query("SELECT min(placed_at) FROM analytics.orders", logger: logger)
      .decode(Date?.self) { oldest = first }
    try await connection.query(
      """
      INSERT INTO analytics.kept_zones (zone, learned, built_until, read_at)
      VALUES (\(zone.identifier), \(learned), \(zone.monthStart(of: zone.starts(of: oldest ?? now)[1])), \(now))
      """, logger: logger)
    logger.info(
      learned ? "sales periods and cohort cells kept in a zone reads asked for" : "sales periods and cohort cells kept in a new zone, built in the background",
      metadata: ["zone": "\(zone.identifier)"])
  }

  /// Computes the rows of the next local month of `zone` not built yet — the sales periods starting in
  /// it and the cohort cells of its cohort — from the orders, and moves `built_until` past it. The last
  /// month (the one holding now) takes every period from its start on, and the zone becomes ready.
  /// Returns whether months remain. Holds the month's lock alone (`monthLock`) so that no change to its
  /// rows' orders is in flight; a replica building the same month waits, then finds it built.
  func buildMonth(of zone: KeptZone, now: Date = Date()) async throws -> Bool {
    try await client.transaction(logger: logger) { connection in
      try await connection.query("SELECT pg_advisory_xact_lock_shared(\(Self.keptZonesLock)::int8)", logger: logger)
      func builtUntil() async throws -> Date? {
        try await zoneRows(on: connection).first { $0.zone == zone }?.builtUntil
      }
      guard let from = try await builtUntil() else { return false }
      let next = zone.monthStart(after: from)
      let last = next > now
      // The last month also locks the next one: an order placed as the month turns is in either. In key
      // order, as changes take them (`withoutUnbuilt`), so that neither waits for the other in a cycle.
      for lock in (last ? [from, next] : [from]).map({ Self.monthLock(zone, $0) }).sorted() {
        try await connection.query("SELECT pg_advisory_xact_lock(\(lock)::int8)", logger: logger)
      }
      guard try await builtUntil() == from else { return true }
      let locked = ContinuousClock.now
      let to = last ? Date.distantFuture : next
      try await connection.query(
        """
        INSERT INTO analytics.sales_periods (zone, unit, period, currency, channel, orders, net_minor, active, new)
        SELECT \(zone.identifier), s.* FROM (\(unescaped: Self.salesPeriodsSQL(placedFrom: from, to: to, zone: zone))) s
        ON CONFLICT (zone, unit, currency, channel, period) DO UPDATE SET orders = EXCLUDED.orders,
          net_minor = EXCLUDED.net_minor, active = EXCLUDED.active, new = EXCLUDED.new
        """, logger: logger)
      try await connection.query(
        """
        INSERT INTO analytics.cohort_cells (zone, cohort, month, customers)
        SELECT \(zone.identifier), c.* FROM (\(unescaped: Self.cohortCellsSQL(firstFrom: from, to: to, zone: zone))) c
        ON CONFLICT (zone, cohort, month) DO UPDATE SET customers = EXCLUDED.customers
        """, logger: logger)
      try await connection.query(
        "UPDATE analytics.kept_zones SET built_until = \(last ? nil : next), built_at = now() WHERE zone = \(zone.identifier)",
        logger: logger)
      // How long the month's lock held back the changes to its orders (for the month of now: new orders).
      let elapsed = (ContinuousClock.now - locked).components
      let held = "\(elapsed.seconds * 1_000 + elapsed.attoseconds / 1_000_000_000_000_000) ms"
      if last {
        logger.info("a learned zone is ready", metadata: ["zone": "\(zone.identifier)", "month_of_now_held": "\(held)"])
      } else {
        logger.debug("a month of a learned zone built", metadata: ["zone": "\(zone.identifier)", "month": "\(from)", "held": "\(held)"])
      }
      return !last
    }
  }

  /// `sales` and `cohorts` (changes to kept rows) without the rows of zones being built that lie in
  /// local months not built yet: a month's build computes them from the orders, this change's included
  /// once it commits. The months at or past where each build stood are locked shared first — so a
  /// month being built waits for this transaction, or this transaction for the build — and the builds'
  /// progress is read again.
  func withoutUnbuilt(
    _ sales: [(KeptKey, [Int64])], _ cohorts: [(KeptKey, [Int64])], zones: [KeptZoneRow], on connection: PostgresConnection
  ) async throws -> (sales: [(KeptKey, [Int64])], cohorts: [(KeptKey, [Int64])]) {
    var building: [String: KeptZone] = [:], seen: [String: Date] = [:]
    for row in zones {
      guard let until = row.builtUntil else { continue }
      building[row.zone.identifier] = row.zone
      seen[row.zone.identifier] = until
    }
    guard !building.isEmpty else { return (sales, cohorts) }
    func month(_ key: KeptKey) -> (KeptZone, Date)? {
      building[key.zone].map { ($0, $0.monthStart(of: key.cohort == .distantPast ? key.period : key.cohort)) }
    }
    let locks = Set((sales + cohorts).compactMap { change in
      month(change.0).flatMap { zone, start in start >= seen[zone.identifier]! ? Self.monthLock(zone, start) : nil }
    }).sorted()
    guard !locks.isEmpty else { return (sales, cohorts) }
    try await connection.query(
      "SELECT pg_advisory_xact_lock_shared(k) FROM (SELECT k FROM unnest(\(locks)::int8[]) AS k ORDER BY k) AS l", logger: logger)
    let now = Dictionary(uniqueKeysWithValues: try await zoneRows(on: connection).map { ($0.zone.identifier, $0.builtUntil) })
    func built(_ change: (KeptKey, [Int64])) -> Bool {
      guard let (zone, start) = month(change.0), let until = now[zone.identifier] ?? nil else { return true }
      return start < until
    }
    return (sales.filter(built), cohorts.filter(built))
  }
}
