import Foundation
import PostgresNIO
import SwiftProtobuf

/// An opaque keyset page token: the sort key (a timestamp in microseconds and an id) of the last row
/// returned. Rows inserted while a client pages never shift the pages it has not read yet. Queries
/// compare against `'epoch'::timestamptz + micros * interval '1 microsecond'`, never a bound `Date`: a
/// `Date` is a binary floating-point number and postgres-nio truncates it to whole microseconds, so a
/// bound `Date` can land one microsecond early and repeat the last row of the previous page.
public struct PageToken: Sendable, Equatable {
  public var micros: Int64
  public var id: UUID

  public init(micros: Int64, id: UUID) {
    self.micros = micros
    self.id = id
  }

  public init(date: Date, id: UUID) {
    self.init(micros: Int64((date.timeIntervalSince1970 * 1_000_000).rounded()), id: id)
  }

  /// Microseconds since the epoch of 0001-01-01T00:00:00Z through 9999-12-31T23:59:59.999999Z.
  static let validMicros: ClosedRange<Int64> = -62_135_596_800_000_000...253_402_300_799_999_999

  /// The timestamp as a date.
  public var date: Date { Date(timeIntervalSince1970: Double(micros) / 1_000_000) }

  /// Decodes a client's token; empty means the first page. INVALID_ARGUMENT for anything else malformed.
  public static func decode(_ token: String, field: String = "page_token") throws -> PageToken? {
    if token.isEmpty { return nil }
    var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
    guard let data = Data(base64Encoded: base64), let text = String(data: data, encoding: .utf8) else {
      throw RPCFailure.invalid(field, "is not a token this service issued")
    }
    let parts = text.split(separator: "|")
    // Tokens carry times within google.protobuf.Timestamp's range (years 1-9999); anything else was
    // not issued here and would overflow PostgreSQL's timestamp arithmetic.
    guard parts.count == 2, let micros = Int64(parts[0]), Self.validMicros.contains(micros),
      let id = UUID(uuidString: String(parts[1]))
    else {
      throw RPCFailure.invalid(field, "is not a token this service issued")
    }
    return PageToken(micros: micros, id: id)
  }

  /// The token's URL-safe text.
  public var encoded: String {
    Data("\(micros)|\(id.uuidString.lowercased())".utf8).base64EncodedString()
      .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
      .replacingOccurrences(of: "=", with: "")
  }
}

extension PageToken {
  /// Splits rows fetched with `limit + 1` into the page to return and the next page's token (empty on
  /// the last page): the sort key of the page's last row.
  public static func page<Row>(
    _ rows: [Row], limit: Int, key: (Row) -> PageToken?
  ) -> (rows: [Row], nextPageToken: String) {
    let page = Array(rows.prefix(limit))
    guard rows.count > limit, let last = page.last, let token = key(last) else { return (page, "") }
    return (page, token.encoded)
  }

  /// The token of a row keyed by a proto timestamp and a UUID string.
  public init?(_ time: Google_Protobuf_Timestamp, _ id: String) {
    guard let id = UUID(uuidString: id) else { return nil }
    self.init(micros: time.seconds * 1_000_000 + Int64(time.nanos / 1000), id: id)
  }
}

extension PostgresQuery.StringInterpolation {
  /// The one keyset-paging condition: rows strictly after `token` in the order `(time, id)` sorts them —
  /// before it when the listing is newest first (`descending`), after it when oldest first. Always true
  /// for the first page (no token). `time` and `id` are SQL column expressions (`c.created_at`, `c.id`).
  public mutating func appendInterpolation(after token: PageToken?, time: String, id: String, descending: Bool) {
    appendLiteral("(")
    appendInterpolation(token?.micros)
    appendLiteral("::bigint IS NULL OR (\(time), \(id)) \(descending ? "<" : ">") ('epoch'::timestamptz + ")
    appendInterpolation(token?.micros)
    appendLiteral("::bigint * interval '1 microsecond', ")
    appendInterpolation(token?.id)
    appendLiteral("::uuid))")
  }
}
