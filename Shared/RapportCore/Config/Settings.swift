import Foundation

/// Reads a process's settings: `--name value` / `--name=value` flags first, then the environment
/// variable `RAPPORT_<SERVICE>_<NAME>`, then `RAPPORT_<NAME>`.
public struct Settings: Sendable {
  /// Upper-case service name used in environment variables, e.g. `CUSTOMER`.
  public let service: String
  private let arguments: [String]
  private let environment: [String: String]

  public init(
    service: String,
    arguments: [String] = CommandLine.arguments,
    environment: [String: String] = ProcessInfo.processInfo.environment
  ) {
    self.service = service.uppercased()
    self.arguments = arguments
    self.environment = environment
  }

  /// The value of setting `name` (kebab-case, e.g. `database-url`), if given.
  public func string(_ name: String) -> String? {
    let flag = "--\(name)"
    for (index, argument) in arguments.enumerated() {
      if argument == flag, index + 1 < arguments.count { return arguments[index + 1] }
      if argument.hasPrefix(flag + "=") { return String(argument.dropFirst(flag.count + 1)) }
    }
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
