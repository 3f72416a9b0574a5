import GRPCCore

/// Runs `body` until it returns or fails with anything but UNAVAILABLE, at most `attempts` times, waiting
/// `backoff`, then twice that, and so on, between attempts; `retrying` hears of each retry (the error and
/// the attempt about to start). For a call that is safe to send again whole — an import stream is: the
/// services store nothing of a batch they refuse and are idempotent per row — and too long for
/// grpc-swift's retry policy, which buffers a stream's messages to replay them and gives up on one of a
/// million rows.
public func retryingUnavailable<Result: Sendable>(
  attempts: Int = 5, backoff: Duration = .seconds(2), retrying: (RPCError, Int) -> Void = { _, _ in },
  _ body: () async throws -> Result
) async throws -> Result {
  var wait = backoff
  for attempt in 1... {
    do {
      return try await body()
    } catch let error as RPCError where error.code == .unavailable && attempt < attempts {
      retrying(error, attempt + 1)
      try await Task.sleep(for: wait)
      wait *= 2
    }
  }
  preconditionFailure("unreachable")
}
