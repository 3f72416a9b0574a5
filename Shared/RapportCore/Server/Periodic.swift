import Logging
import ServiceLifecycle

/// A service's timed work: runs `pass` every `interval` until shutdown. A failed pass is logged and
/// retried at the next interval. Passes must be safe on several replicas at once (use `SKIP LOCKED`).
public struct Periodic: Service {
  public let name: String
  public let interval: Duration
  public let logger: Logger
  public let pass: @Sendable () async throws -> Void

  public init(_ name: String, every interval: Duration, logger: Logger, pass: @escaping @Sendable () async throws -> Void) {
    self.name = name
    self.interval = interval
    self.logger = logger
    self.pass = pass
  }

  public func run() async throws {
    while !Task.isCancelled {
      do {
        try await pass()
      } catch {
        if Task.isCancelled { return }
        logger.warning("\(name) failed; retrying next interval", metadata: ["error": "\(error)"])
      }
      try? await Task.sleep(for: interval)
    }
  }
}
