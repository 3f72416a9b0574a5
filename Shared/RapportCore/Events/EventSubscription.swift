import CoreMetrics
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportProtos
import ServiceLifecycle
import Synchronization

/// Consumes another service's `EventFeed` from a durable cursor, reconnecting with backoff while the
/// source is down. The consumer stores the cursor in the same transaction as the events' effects, so
/// delivery is at-least-once and the effect exactly-once. Events are applied in batches: whatever has
/// arrived while the previous batch was being applied (up to `maxBatch`) goes into one transaction, so a
/// burst costs a few commits instead of one per event, and a quiet feed still applies each event at once.
/// After a batch that was not full the applier waits `linger` before the next one: under a steady stream
/// (a thousand orders a second) that turns hundreds of tiny transactions a second into at most
/// 1 / `linger`, at the price of that much more delay for events that arrive during the wait.
public struct EventSubscription: Service {
  /// Name of the source, e.g. `order`; the key of the stored cursor.
  public let source: String
  let feed: Rapport_Events_V1_EventFeed.Client<HTTP2ClientTransport.Posix>
  let types: [String]
  let cursor: @Sendable () async throws -> Int64
  let apply: @Sendable ([Rapport_Events_V1_Event]) async throws -> Void
  /// Where failures are recorded for status RPCs (optional).
  let failures: FeedFailures?
  /// Most events applied in one transaction.
  public static let maxBatch = 500
  /// The pause after a batch that was not full (measured: see docs/BENCHMARKS.md, issue 4).
  public static let linger: Duration = .milliseconds(10)
  let logger: Logger

  /// - Parameters:
  ///   - cursor: reads the last applied sequence for `source` from the consumer's store.
  ///   - apply: applies a batch of events (in sequence order) and advances the cursor, in one
  ///     transaction; must ignore events at or below the stored cursor.
  public init(
    source: String, client: GRPCClient<HTTP2ClientTransport.Posix>, types: [String], logger: Logger,
    failures: FeedFailures? = nil,
    cursor: @escaping @Sendable () async throws -> Int64,
    apply: @escaping @Sendable ([Rapport_Events_V1_Event]) async throws -> Void
  ) {
    self.source = source
    self.feed = Rapport_Events_V1_EventFeed.Client(wrapping: client)
    self.types = types
    self.cursor = cursor
    self.apply = apply
    self.failures = failures
    self.logger = logger
  }

  /// Exports `rapport_feed_consumer_lag_seconds{source}` (when the process has metrics), refreshed every
  /// second: how old the oldest event received from `source` and not yet applied is; 0 when everything
  /// received is applied. A consumer stuck on a batch (its database down, a failing effect) shows a
  /// growing lag; a source that is down shows as that service being down, not as lag.
  public func run() async throws {
    let pending = PendingSince(cursor: RPCMetrics.current?.gauge("rapport_feed_cursor_sequence", [("source", source)]))
    let lag = RPCMetrics.current?.gauge("rapport_feed_consumer_lag_seconds", [("source", source)])
    guard let lag else { return try await consume(pending) }
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask {
        while !Task.isCancelled {
          lag.record(pending.value.withLock { $0 }.map { max(0, Date().timeIntervalSince($0)) } ?? 0)
          try? await Task.sleep(for: .seconds(1))
        }
      }
      try await consume(pending)
      group.cancelAll()
    }
  }

  private func consume(_ pending: PendingSince) async throws {
    var backoff = Backoff()
    while !Task.isCancelled {
      do {
        var request = Rapport_Events_V1_SubscribeRequest()
        request.afterSequence = try await cursor()
        request.types = types
        let applied = try await feed.subscribe(request) { response in
          try await applyInBatches(response.messages, pending: pending)
        }
        if applied > 0 { backoff.reset() }
      } catch {
        if Task.isCancelled { return }
        failures?.record(source, error)
        logger.warning(
          "event feed interrupted; reconnecting",
          metadata: ["source": "\(source)", "error": "\(error)"])
      }
      try? await Task.sleep(for: backoff.next())
    }
  }

  /// Reads `messages` in one task and applies what has accumulated in another; the reader pauses while
  /// the buffer holds `maxBatch` × 4 events. Returns how many events were applied.
  private func applyInBatches(
    _ messages: RPCAsyncSequence<Rapport_Events_V1_Event, any Error>, pending: PendingSince
  ) async throws -> Int {
    let buffer = EventBuffer()
    return try await withThrowingTaskGroup(of: Int.self) { group in
      group.addTask {
        do {
          for try await event in messages {
            while buffer.count >= Self.maxBatch * 4 { try await Task.sleep(for: .milliseconds(1)) }
            buffer.push(event)
          }
          buffer.finish(nil)
        } catch {
          buffer.finish(error)
        }
        return 0
      }
      group.addTask {
        var applied = 0
        while let batch = try await buffer.next(max: Self.maxBatch) {
          pending.value.withLock { $0 = batch.first.map { $0.occurredAt.date } }
          try await RapportTracing.applying(batch, from: source) { try await apply(batch) }
          pending.value.withLock { $0 = nil }
          if let last = batch.last { pending.cursor?.record(last.sequence) }
          applied += batch.count
          if batch.count < Self.maxBatch { try await Task.sleep(for: Self.linger) }
        }
        return applied
      }
      return try await group.reduce(0, +)
    }
  }
}

/// When the oldest received event that is not applied yet occurred; nil when all are applied.
final class PendingSince: Sendable {
  let value = Mutex<Date?>(nil)
  /// `rapport_feed_cursor_sequence{source}`: the last applied sequence.
  let cursor: CoreMetrics.Gauge?

  init(cursor: CoreMetrics.Gauge?) { self.cursor = cursor }
}
