import Logging
import PostgresNIO
import ServiceLifecycle

/// Keeps one connection LISTENing on the outbox channel and turns each notification into
/// `OutboxNotifier.notify()`. Reconnects with backoff; every (re)connect also notifies, because
/// notifications sent while it was away are lost.
public struct OutboxListener: Service {
  let client: Database
  let outbox: Outbox
  let notifier: OutboxNotifier
  let logger: Logger

  public init(client: Database, outbox: Outbox, notifier: OutboxNotifier, logger: Logger) {
    self.client = client
    self.outbox = outbox
    self.notifier = notifier
    self.logger = logger
  }

  public func run() async throws {
    var backoff = Backoff()
    while !Task.isCancelled {
      let started = ContinuousClock.now
      do {
        try await client.withConnection { connection in
          try await connection.listen(on: outbox.channel) { notifications in
            notifier.notify()
            for try await _ in notifications { notifier.notify() }
          }
        }
      } catch {
        if Task.isCancelled { return }
        logger.warning("outbox listener lost its connection", metadata: ["error": "\(error)"])
      }
      if ContinuousClock.now - started > .seconds(10) { backoff.reset() }
      try? await Task.sleep(for: backoff.next())
    }
  }
}

/// Exponential backoff with a cap, for reconnect loops.
public struct Backoff: Sendable {
  public var initial: Duration
  public var maximum: Duration
  private var current: Duration

  public init(initial: Duration = .milliseconds(100), maximum: Duration = .seconds(5)) {
    self.initial = initial
    self.maximum = maximum
    self.current = initial
  }

  /// The delay to wait now; doubles the next one up to the cap.
  public mutating func next() -> Duration {
    defer { current = min(current * 2, maximum) }
    return current
  }

  public mutating func reset() { current = initial }
}
