import Foundation
import Logging
import RapportCore
import ServiceLifecycle
import Synchronization

/// Recomputes rule segments for the customers that applied batches were about, off the feeds' path: a
/// subscription marks them and goes on applying (so segment work never delays the next batch's metrics),
/// and this worker evaluates whoever is marked, as soon as it can. A failure leaves them marked and is
/// retried after a second; the scheduled pass (`--segment-interval-s`) covers a restart in between.
final class SegmentEvaluator: Service, Sendable {
  private let store: AnalyticsStore
  private let logger: Logger
  private let pending = Mutex<Set<UUID>>([])
  private let (signals, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))

  init(store: AnalyticsStore, logger: Logger) {
    self.store = store
    self.logger = logger
  }

  /// Marks `customers` for re-evaluation.
  func mark(_ customers: [UUID]) {
    guard !customers.isEmpty else { return }
    pending.withLock { $0.formUnion(customers) }
    signal.yield()
  }

  func run() async throws {
    for await _ in signals.cancelOnGracefulShutdown() {
      while true {
        let batch = pending.withLock { marked -> [UUID] in
          defer { marked.removeAll() }
          return Array(marked)
        }
        guard !batch.isEmpty else { break }
        do {
          try await store.evaluateAllSegments(customers: batch)
        } catch {
          if Task.isCancelled { return }
          pending.withLock { $0.formUnion(batch) }
          logger.warning("segment update failed; retrying", metadata: ["error": "\(error)"])
          try? await Task.sleep(for: .seconds(1))
        }
      }
    }
  }
}
