import Foundation
import Logging
import Synchronization

/// `--log-format json`: one JSON object per line on standard error — `time` (UTC, RFC 3339 with
/// milliseconds), `level`, `service`, `message`, then the line's metadata (`request_id` on every line of
/// a call, `error`, …) as string fields. What log collectors (Loki, Elasticsearch, Cloud Logging) read
/// without a parser. Nothing personal is logged at info level or below (docs/OPERATIONS.md).
public struct JSONLogHandler: LogHandler {
  public var logLevel: Logger.Level = .info
  public var metadata: Logger.Metadata = [:]
  public var metadataProvider: Logger.MetadataProvider?
  let service: String

  public init(service: String, metadataProvider: Logger.MetadataProvider?) {
    self.service = service
    self.metadataProvider = metadataProvider
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var fields: [String: String] = [:]
    for (key, value) in metadata { fields[key] = "\(value)" }
    for (key, value) in metadataProvider?.get() ?? [:] { fields[key] = "\(value)" }
    for (key, value) in event.metadata ?? [:] { fields[key] = "\(value)" }
    fields["time"] = Self.timestamp(Date())
    fields["level"] = event.level.rawValue
    fields["service"] = service
    fields["message"] = "\(event.message)"
    guard var line = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
    line.append(0x0A)
    Self.output.withLock { _ = $0; FileHandle.standardError.write(line) }
  }

  /// Lines from several tasks are written whole, one at a time.
  private static let output = Mutex(())

  static func timestamp(_ date: Date) -> String {
    date.formatted(.iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true).timeSeparator(.colon).timeZone(separator: .omitted))
  }
}
