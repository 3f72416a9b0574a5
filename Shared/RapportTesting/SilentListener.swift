import Foundation

/// A TCP port that accepts connections and never answers: calls to it can only time out. With
/// `listening: false` the port is only bound: connections are refused, and while this object holds it
/// no other test's server can take the port (a port from `Shell.freePort()` could be).
public final class SilentListener: Sendable {
  let fd: Int32
  public let port: Int

  ///
  /// `reserving` binds that port with `SO_REUSEADDR` and does not listen: the kernel then gives the port
  /// to no outgoing connection, while a server that also sets `SO_REUSEADDR` (as NIO's and grpc-swift's
  /// do) can still bind and listen on it. That keeps a dead server's port for its replacement.
  public init(listening: Bool = true, reserving port: Int? = nil) throws {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    self.fd = fd
    if port != nil {
      var one: Int32 = 1
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port ?? 0).bigEndian
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard ok, port != nil || !listening || listen(fd, 16) == 0 else {
      close(fd)
      throw TestFailure("silent listener could not bind")
    }
    self.port = Int(UInt16(bigEndian: address.sin_port))
  }

  /// Closes the socket: pending connections are reset, so clients stuck connecting can shut down.
  public func stop() { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
}
