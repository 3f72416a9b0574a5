import Foundation
import Logging
import RapportCore
import ServiceLifecycle

/// The order service's timed work: every `interval`, marks carts idle longer than `abandonAfter` as
/// abandoned and B2B orders past their due date as overdue (each emitting its event once). Several
/// replicas may run it; `SKIP LOCKED` keeps them off each other's rows.
struct OrderScanner: Service {
  let store: OrderStore
  let clock: WallClock
  let interval: Duration
  let abandonAfter: Duration
  let logger: Logger

  func run() async throws {
    while !Task.isCancelled {
      do {
        try await scanOnce()
      } catch {
        if Task.isCancelled { return }
        logger.warning("order scan failed; retrying next interval", metadata: ["error": "\(error)"])
      }
      try? await Task.sleep(for: interval)
    }
  }

  /// One pass over both scans, repeated while a scan fills its batch.
  func scanOnce() async throws {
    let idle = Double(abandonAfter.components.seconds) + Double(abandonAfter.components.attoseconds) / 1e18
    while try await store.markAbandonedCarts(now: clock.now, idle: idle) == OrderStore.scanBatch {}
    while try await store.markOverdueOrders(now: clock.now) == OrderStore.scanBatch {}
  }
}
