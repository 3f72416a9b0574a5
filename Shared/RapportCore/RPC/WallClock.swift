import Foundation
import Synchronization

/// Where a service reads "now" for the times it stores and the deadlines its workers check. Production
/// uses `.system`; tests use `ManualClock` to move time forward (a due date passing, a cart going idle)
/// without sleeping.
public struct WallClock: Sendable {
  private let read: @Sendable () -> Date

  public init(_ read: @escaping @Sendable () -> Date) { self.read = read }

  /// The machine's clock.
  public static let system = WallClock { Date() }

  /// "Now" read from a file that holds one RFC 3339 instant (`2026-03-09T09:00:00Z`), re-read on every
  /// call — a rehearsal and testing aid (`clock-file` setting): run a service's timers (SLA due times,
  /// abandoned carts) at a chosen time and move it by rewriting the file. An unreadable or malformed file
  /// reads as the system time.
  public static func file(_ path: String) -> WallClock {
    WallClock {
      guard let text = try? String(contentsOfFile: path, encoding: .utf8),
        let date = try? Date(text.trimmingCharacters(in: .whitespacesAndNewlines), strategy: .iso8601)
      else { return Date() }
      return date
    }
  }

  /// Now, on the microsecond grid PostgreSQL stores (see `Date.onMicrosecondGrid`).
  public var now: Date { read().onMicrosecondGrid }
}

/// A clock that stands still until told to move; share one between a service under test and the test.
public final class ManualClock: Sendable {
  private let current: Mutex<Date>

  public init(_ start: Date = Date()) { current = Mutex(start) }

  public var wallClock: WallClock { WallClock { self.current.withLock { $0 } } }

  /// Moves the clock forward by `interval` seconds.
  public func advance(by interval: TimeInterval) { current.withLock { $0 += interval } }
}
