import Foundation
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

  /// Exported (when the process has metrics): `rapport_worker_runs_total{worker, outcome}` and
  /// `rapport_worker_last_success_timestamp_seconds{worker}`, for "this scanner has stalled" alerts.
  public func run() async throws {
    let metrics = RPCMetrics.current
    let succeeded = metrics?.counter("rapport_worker_runs_total", [("worker", name), ("outcome", "ok")])
    let failed = metrics?.counter("rapport_worker_runs_total", [("worker", name), ("outcome", "error")])
    let lastSuccess = metrics?.gauge("rapport_worker_last_success_timestamp_seconds", [("worker", name)])
    while !Task.isCancelled {
      do {
        try await pass()
        succeeded?.increment()
        lastSuccess?.record(Date().timeIntervalSince1970)
      } catch {
        if Task.isCancelled { return }
        failed?.increment()
        logger.warning("\(name) failed; retrying next interval", metadata: ["error": "\(error)"])
      }
      try? await Task.sleep(for: interval)
    }
  }
}
