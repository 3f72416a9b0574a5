/// A `host:port` pair: a listen address or the address of another service.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
  public var host: String
  public var port: Int

  public init(host: String, port: Int) {
    self.host = host
    self.port = port
  }

  /// Parses `host:port` (IPv6 hosts in brackets, `[::1]:50051`).
  public init(parsing text: String) throws {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
      (0...65535).contains(port)
    else { throw ConfigurationError("'\(text)' is not host:port") }
    var host = String(text[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard !host.isEmpty else { throw ConfigurationError("'\(text)' has no host") }
    self.init(host: host, port: port)
  }

  public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension Settings {
  /// A `host:port` setting.
  public func address(_ name: String, default fallback: String) throws -> HostPort {
    try HostPort(parsing: string(name, default: fallback))
  }
}
