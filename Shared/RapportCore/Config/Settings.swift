import Foundation

/// A process's settings after the command line was parsed: a flag given on the command line first, then
/// the environment variable `RAPPORT_<SERVICE>_<NAME>`, then `RAPPORT_<NAME>`. The command line itself is
/// parsed by swift-argument-parser (`ServiceCommand`), which refuses unknown flags and answers `--help`
/// and `--version`; environment variables are how `rapport up`, systemd units and Kubernetes configure
/// a service.
public struct Settings: Sendable {
  /// Upper-case service name used in environment variables, e.g. `CUSTOMER`.
  public let service: String
  private let flags: [String: String]
  private let environment: [String: String]

  /// - Parameter flags: values given on the command line, by kebab-case name (`database-url`).
  public init(
    service: String, flags: [String: String] = [:],
    environment: [String: String] = ProcessInfo.processInfo.environment
  ) {
    self.service = service.uppercased()
    self.flags = flags
    self.environment = environment
  }

  /// The value of setting `name` (kebab-case, e.g. `database-url`), if given.
  public func string(_ name: String) -> String? {
    if let value = flags[name] { return value }
    let key = name.uppercased().replacingOccurrences(of: "-", with: "_")
    return environment["RAPPORT_\(service)_\(key)"] ?? environment["RAPPORT_\(key)"]
  }

  /// The value of setting `name`, or `fallback`.
  public func string(_ name: String, default fallback: String) -> String {
    string(name) ?? fallback
  }

  /// An integer setting; a malformed value is a configuration error.
  public func int(_ name: String, default fallback: Int) throws -> Int {
    guard let raw = string(name) else { return fallback }
    guard let value = Int(raw) else { throw ConfigurationError("\(name) must be an integer, got '\(raw)'") }
    return value
  }

  /// A yes/no setting (`true`/`false`, `1`/`0`); anything else is a configuration error.
  public func bool(_ name: String, default fallback: Bool) throws -> Bool {
    guard let raw = string(name) else { return fallback }
    switch raw.lowercased() {
    case "true", "1": return true
    case "false", "0": return false
    default: throw ConfigurationError("\(name) must be true or false, got '\(raw)'")
    }
  }

  /// A duration setting in milliseconds.
  public func milliseconds(_ name: String, default fallback: Int) throws -> Duration {
    .milliseconds(try int(name, default: fallback))
  }
}

extension Settings {
  /// The service's clock: the system's, or with `clock-file` the instant written in that file (see
  /// `WallClock.file`; for rehearsals and end-to-end tests, never production).
  public var clock: WallClock {
    string("clock-file").map(WallClock.file) ?? .system
  }
}

/// A setting is missing or malformed; the process exits with this message.
public struct ConfigurationError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}
