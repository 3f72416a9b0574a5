import Foundation
import Logging
import RapportCore

/// The order service's timed work: every `interval`, marks carts idle longer than `abandonAfter` as
/// abandoned and B2B orders past their due date as overdue (each emitting its event once). Several
/// replicas may run it; `SKIP LOCKED` keeps them off each other's rows.
enum OrderScanner {
  static func periodic(
    store: OrderStore, clock: WallClock, interval: Duration, abandonAfter: Duration, logger: Logger
  ) -> Periodic {
    let idle = Double(abandonAfter.components.seconds) + Double(abandonAfter.components.attoseconds) / 1e18
    return Periodic("order scan", every: interval, logger: logger) {
      // Each scan repeats while it fills its batch.
      while try await store.markAbandonedCarts(now: clock.now, idle: idle) == OrderStore.scanBatch {}
      while try await store.markOverdueOrders(now: clock.now) == OrderStore.scanBatch {}
    }
  }
}
