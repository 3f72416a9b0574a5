import GRPCNIOTransportHTTP2

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

  /// The client target: an IP address as itself (TLS then checks the certificate's IP address and sends
  /// no SNI, which may not carry an address), a name through DNS with one endpoint per address it
  /// resolves to (`EveryAddress`: with round robin, calls spread over a headless Service's replicas).
  public var target: any ResolvableTarget {
    if Self.ipv4Octets(host) != nil { return .ipv4(address: host, port: port) }
    if host.contains(":") { return .ipv6(address: host, port: port) }
    return .everyAddress(host: host, port: port)
  }

  /// The four octets of a dotted IPv4 address; nil for anything else.
  public static func ipv4Octets(_ host: String) -> [UInt8]? {
    let octets = host.split(separator: ".", omittingEmptySubsequences: false).compactMap { UInt8($0) }
    return octets.count == 4 && host.split(separator: ".", omittingEmptySubsequences: false).count == 4 ? octets : nil
  }
}

extension Settings {
  /// A `host:port` setting.
  public func address(_ name: String, default fallback: String) throws -> HostPort {
    try HostPort(parsing: string(name, default: fallback))
  }
}
