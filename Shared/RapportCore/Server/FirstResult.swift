import Synchronization

/// The first of several racing outcomes, awaited once: whichever of `finish` calls comes first wins and
/// resumes the waiter; later ones are ignored. Unlike a task group, waiting does not also wait for the
/// losers to end (for work that may not honour cancellation).
public final class FirstResult<Value: Sendable>: Sendable {
  private let state = Mutex<(result: Result<Value, any Error>?, waiter: CheckedContinuation<Value, any Error>?)>(
    (nil, nil))

  public init() {}

  /// Records `result` unless one was recorded; true if this call did.
  @discardableResult
  public func finish(_ result: Result<Value, any Error>) -> Bool {
    let (first, waiter) = state.withLock { state -> (Bool, CheckedContinuation<Value, any Error>?) in
      guard state.result == nil else { return (false, nil) }
      state.result = result
      defer { state.waiter = nil }
      return (true, state.waiter)
    }
    waiter?.resume(with: result)
    return first
  }

  /// The first result; waits for it.
  public func value() async throws -> Value {
    try await withCheckedThrowingContinuation { continuation in
      let result = state.withLock { state -> Result<Value, any Error>? in
        if state.result == nil { state.waiter = continuation }
        return state.result
      }
      if let result { continuation.resume(with: result) }
    }
  }
}
