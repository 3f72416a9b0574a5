import Foundation

/// When a support team works: weekly opening hours in one time zone, minus holidays. SLA targets are
/// measured in this calendar's business time. All arithmetic is done on real instants; the local
/// calendar only says where each day's windows begin and end, so a window spanning a DST change has
/// its real length (23 or 25 hours for a whole day).
struct BusinessCalendar: Sendable {
  /// One opening window on a weekday, in minutes after local midnight (end 1440 means midnight).
  struct Window: Sendable, Equatable {
    /// ISO weekday: 1 = Monday … 7 = Sunday.
    var weekday: Int
    var startMinute: Int
    var endMinute: Int
  }

  /// Why a calendar definition was refused; `field` names what is wrong.
  struct Invalid: Error, Equatable {
    let field: String
    let reason: String
  }

  let timeZone: TimeZone
  /// Windows by ISO weekday, sorted by start.
  private let windows: [Int: [Window]]
  /// Local dates ("2026-12-25") on which nothing counts.
  private let holidays: Set<String>
  private let calendar: Calendar

  /// Validates the definition: a known IANA time zone, at least one window, windows within a day,
  /// start before end, no overlaps on a weekday, holidays as YYYY-MM-DD.
  init(timeZone identifier: String, windows: [Window], holidays: [String] = []) throws {
    guard let zone = TimeZone(identifier: identifier) else {
      throw Invalid(field: "time_zone", reason: "must be an IANA time zone such as Europe/Berlin")
    }
    guard !windows.isEmpty else { throw Invalid(field: "hours", reason: "at least one opening window is required") }
    var byDay: [Int: [Window]] = [:]
    for (index, window) in windows.enumerated() {
      guard (1...7).contains(window.weekday) else {
        throw Invalid(field: "hours[\(index)].weekday", reason: "must be 1 (Monday) to 7 (Sunday)")
      }
      guard (0..<1440).contains(window.startMinute), (1...1440).contains(window.endMinute),
        window.startMinute < window.endMinute
      else {
        throw Invalid(field: "hours[\(index)]", reason: "must start before it ends, within one day (00:00–24:00)")
      }
      byDay[window.weekday, default: []].append(window)
    }
    for (day, list) in byDay {
      let sorted = list.sorted { $0.startMinute < $1.startMinute }
      for (earlier, later) in zip(sorted, sorted.dropFirst()) where later.startMinute < earlier.endMinute {
        throw Invalid(field: "hours", reason: "windows overlap on weekday \(day)")
      }
      byDay[day] = sorted
    }
    for (index, holiday) in holidays.enumerated() where Self.parseDay(holiday) == nil {
      throw Invalid(field: "holidays[\(index)]", reason: "must be a date YYYY-MM-DD")
    }
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = zone
    self.timeZone = zone
    self.windows = byDay
    self.holidays = Set(holidays)
    self.calendar = calendar
  }

  /// The instant at which `seconds` of business time have passed since `start`. Zero is `start` itself.
  func adding(_ seconds: TimeInterval, to start: Date) -> Date {
    guard seconds > 0 else { return start }
    var remaining = seconds
    for (open, close) in intervals(from: start) {
      let from = max(open, start)
      guard from < close else { continue }
      let available = close.timeIntervalSince(from)
      if remaining <= available { return from.addingTimeInterval(remaining) }
      remaining -= available
    }
    return .distantFuture
  }

  /// Business seconds between `start` and `end` (0 when `end` is not after `start`).
  func businessSeconds(from start: Date, to end: Date) -> TimeInterval {
    guard end > start else { return 0 }
    var total: TimeInterval = 0
    for (open, close) in intervals(from: start) {
      if open >= end { break }
      let from = max(open, start)
      let to = min(close, end)
      if from < to { total += to.timeIntervalSince(from) }
    }
    return total
  }

  /// Opening intervals in time order, from the local day containing `start`, for up to ten years.
  private func intervals(from start: Date) -> some Sequence<(Date, Date)> {
    let firstDay = calendar.startOfDay(for: start)
    return (0..<3660).lazy.flatMap { offset -> [(Date, Date)] in
      guard let day = calendar.date(byAdding: .day, value: offset, to: firstDay) else { return [] }
      return self.openings(on: day)
    }
  }

  /// The opening intervals of one local day (empty on holidays).
  private func openings(on day: Date) -> [(Date, Date)] {
    let parts = calendar.dateComponents([.year, .month, .day, .weekday], from: day)
    guard let year = parts.year, let month = parts.month, let date = parts.day, let weekday = parts.weekday else {
      return []
    }
    if holidays.contains(String(format: "%04d-%02d-%02d", year, month, date)) { return [] }
    let iso = weekday == 1 ? 7 : weekday - 1
    return (windows[iso] ?? []).compactMap { window in
      guard let open = at(window.startMinute, year, month, date), let close = at(window.endMinute, year, month, date)
      else { return nil }
      return (open, close)
    }
  }

  /// The instant of `minute` after local midnight of a date; 1440 is the next midnight. A wall time that
  /// does not exist (the hour skipped by DST) resolves to the first instant after the gap.
  private func at(_ minute: Int, _ year: Int, _ month: Int, _ day: Int) -> Date? {
    guard let midnight = calendar.date(from: DateComponents(year: year, month: month, day: day)) else { return nil }
    if minute == 1440 { return calendar.date(byAdding: .day, value: 1, to: midnight) }
    return calendar.date(
      from: DateComponents(year: year, month: month, day: day, hour: minute / 60, minute: minute % 60))
  }

  private static func parseDay(_ text: String) -> (Int, Int, Int)? {
    let parts = text.split(separator: "-").compactMap { Int($0) }
    guard parts.count == 3, text.count == 10, (1...12).contains(parts[1]), (1...31).contains(parts[2]) else { return nil }
    return (parts[0], parts[1], parts[2])
  }
}

/// One SLA target's clock: business time is consumed only while the clock runs (not while the ticket
/// waits on the customer), and the due time moves out by however long it was paused.
struct SlaClock: Sendable, Equatable {
  /// The target, in business seconds.
  var target: TimeInterval
  /// Business seconds consumed in earlier running periods.
  var consumed: TimeInterval = 0
  /// When the current running period began; nil while paused.
  var runningSince: Date?

  /// When the target is due; nil while paused.
  func due(in calendar: BusinessCalendar) -> Date? {
    runningSince.map { calendar.adding(max(target - consumed, 0), to: $0) }
  }

  mutating func pause(at time: Date, in calendar: BusinessCalendar) {
    guard let since = runningSince else { return }
    consumed += calendar.businessSeconds(from: since, to: time)
    runningSince = nil
  }

  mutating func resume(at time: Date) {
    if runningSince == nil { runningSince = time }
  }
}
