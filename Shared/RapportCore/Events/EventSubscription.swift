import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportProtos
import ServiceLifecycle

/// Consumes another service's `EventFeed` from a durable cursor, reconnecting with backoff while the
/// source is down. The consumer stores the cursor in the same transaction as each event's effect, so
/// delivery is at-least-once and the effect exactly-once.
public struct EventSubscription: Service {
  /// Name of the source, e.g. `order`; the key of the stored cursor.
  public let source: String
  let feed: Rapport_Events_V1_EventFeed.Client<HTTP2ClientTransport.Posix>
  let types: [String]
  let cursor: @Sendable () async throws -> Int64
  let apply: @Sendable (Rapport_Events_V1_Event) async throws -> Void
  let logger: Logger

  /// - Parameters:
  ///   - cursor: reads the last applied sequence for `source` from the consumer's store.
  ///   - apply: applies one event and advances the cursor, in one transaction; must ignore an event at
  ///     or below the stored cursor.
  public init(
    source: String, client: GRPCClient<HTTP2ClientTransport.Posix>, types: [String], logger: Logger,
    cursor: @escaping @Sendable () async throws -> Int64,
    apply: @escaping @Sendable (Rapport_Events_V1_Event) async throws -> Void
  ) {
    self.source = source
    self.feed = Rapport_Events_V1_EventFeed.Client(wrapping: client)
    self.types = types
    self.cursor = cursor
    self.apply = apply
    self.logger = logger
  }

  public func run() async throws {
    var backoff = Backoff()
    while !Task.isCancelled {
      do {
        var request = Rapport_Events_V1_SubscribeRequest()
        request.afterSequence = try await cursor()
        request.types = types
        let applied = try await feed.subscribe(request) { response in
          var applied = 0
          for try await event in response.messages {
            try await apply(event)
            applied += 1
          }
          return applied
        }
        if applied > 0 { backoff.reset() }
      } catch {
        if Task.isCancelled { return }
        logger.warning(
          "event feed interrupted; reconnecting",
          metadata: ["source": "\(source)", "error": "\(error)"])
      }
      try? await Task.sleep(for: backoff.next())
    }
  }
}
