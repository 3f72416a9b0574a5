import GRPCCore
import Logging
import PostgresNIO
import RapportProtos

/// `rapport.events.v1.EventFeed` over a service's outbox: the backlog after the cursor in sequence order,
/// then live events as LISTEN/NOTIFY wakes the stream. Ends when the client cancels or the server drains.
public struct EventFeedService: Rapport_Events_V1_EventFeed.SimpleServiceProtocol {
  let client: Database
  let outbox: Outbox
  let notifier: OutboxNotifier
  let logger: Logger
  /// Events read per query.
  let batchSize = 256
  /// Least time between two reads of a live stream: under a steady stream of commits (one notification
  /// each) a stream reads at most 1 / `linger` times per second, each read carrying every event committed
  /// meanwhile, instead of one read (and one round trip to PostgreSQL) per commit per subscriber. An
  /// event committed after a quiet spell is read at once. Consumers wait `EventSubscription.linger`
  /// after a partial batch too.
  public static let linger: Duration = .milliseconds(5)

  public init(client: Database, outbox: Outbox, notifier: OutboxNotifier, logger: Logger) {
    self.client = client
    self.outbox = outbox
    self.notifier = notifier
    self.logger = logger
  }

  public func subscribe(
    request: Rapport_Events_V1_SubscribeRequest,
    response: RPCWriter<Rapport_Events_V1_Event>,
    context: ServerContext
  ) async throws {
    try Self.validate(after: request.afterSequence, types: request.types)
    let waiter = notifier.makeWaiter()
    defer { notifier.remove(waiter) }
    try await withRPCCancellationHandler {
      var cursor = request.afterSequence
      while !notifier.isFinished(waiter) {
        let generation = notifier.generation
        let readAt = ContinuousClock.now
        let events = try await outbox.read(
          after: cursor, types: request.types, limit: batchSize, from: client, logger: logger)
        for event in events {
          try await response.write(event)
          cursor = event.sequence
        }
        if events.count < batchSize {
          await notifier.wait(beyond: generation, waiter: waiter)
          let next = readAt + Self.linger
          if next > .now, !notifier.isFinished(waiter) { try? await Task.sleep(until: next) }
        }
      }
    } onCancelRPC: {
      notifier.cancel(waiter)
    }
  }

  public func getBacklog(
    request: Rapport_Events_V1_GetBacklogRequest, context: ServerContext
  ) async throws -> Rapport_Events_V1_GetBacklogResponse {
    try Self.validate(after: request.afterSequence, types: request.types)
    let backlog = try await outbox.backlog(after: request.afterSequence, types: request.types, from: client, logger: logger)
    return .with {
      $0.headSequence = backlog.head
      $0.pendingEvents = backlog.pending
      if let oldest = backlog.oldest { $0.oldestPendingTime = .init(microsecondsOf: oldest) }
    }
  }

  /// A cursor and type list as `Subscribe` and `GetBacklog` take them.
  static func validate(after: Int64, types: [String]) throws {
    guard after >= 0 else { throw RPCFailure.invalid("after_sequence", "must not be negative") }
    guard types.count <= 64 else { throw RPCFailure.invalid("types", "must list at most 64 types") }
    if let index = types.firstIndex(where: { $0.utf8.count > 128 }) {
      throw RPCFailure.invalid("types[\(index)]", "must be at most 128 characters")
    }
  }
}
