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
