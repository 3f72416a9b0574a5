import Foundation
import SwiftProtobuf

extension Date {
  /// Now, on the microsecond grid PostgreSQL stores, so what a write returns equals what a read returns.
  public static var databaseNow: Date { WallClock.system.now }

  /// This instant on the microsecond grid PostgreSQL stores: a quarter of a microsecond into its
  /// microsecond. postgres-nio encodes a `Date` by truncating to whole microseconds and `microsecondsOf`
  /// rounds; a `Date` exactly on the grid is often a hair below it in binary floating point (Double has
  /// ~0.12 µs resolution here), which truncation turned into the microsecond before. A quarter in, both
  /// land on the same microsecond, so what a write returns equals what a later read returns.
  public var onMicrosecondGrid: Date {
    let micros = (timeIntervalSince1970 * 1_000_000).rounded(.down)
    return Date(timeIntervalSince1970: (micros + 0.25) / 1_000_000)
  }
}

extension Google_Protobuf_Timestamp {
  /// A timestamp of `date` rounded to whole microseconds (the precision of stored times; a `Date` is a
  /// floating-point number whose last digits differ by the path it took).
  public init(microsecondsOf date: Date) {
    let micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
    let seconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
    self.init(seconds: seconds, nanos: Int32(micros - seconds * 1_000_000) * 1000)
  }
}
