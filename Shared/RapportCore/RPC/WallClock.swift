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

  /// Now, on the microsecond grid PostgreSQL stores: a quarter of a microsecond into the microsecond.
  /// postgres-nio encodes a `Date` by truncating to whole microseconds and `microsecondsOf` rounds; a
  /// `Date` exactly on the grid is often a hair below it in binary floating point (Double has ~0.12 µs
  /// resolution here), which truncation turned into the microsecond before. A quarter in, both land on
  /// the same microsecond, so what a write returns equals what a later read returns.
  public var now: Date {
    let micros = (read().timeIntervalSince1970 * 1_000_000).rounded(.down)
    return Date(timeIntervalSince1970: (micros + 0.25) / 1_000_000)
  }
}

/// A clock that stands still until told to move; share one between a service under test and the test.
public final class ManualClock: Sendable {
  private let current: Mutex<Date>

  public init(_ start: Date = Date()) { current = Mutex(start) }

  public var wallClock: WallClock { WallClock { self.current.withLock { $0 } } }

  /// Moves the clock forward by `interval` seconds.
  public func advance(by interval: TimeInterval) { current.withLock { $0 += interval } }
}
