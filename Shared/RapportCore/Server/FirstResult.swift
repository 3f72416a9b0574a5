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

/// Runs `calls` concurrently and returns once all have finished or `limit` has passed, whichever comes
/// first (or the caller is cancelled). Calls still running then are cancelled but not awaited: a call
/// stuck connecting to a silent peer may take a while to notice, and the caller must not wait for that
/// (a task group would). One task per call plus one timer; calls report their results themselves.
public func fanOut(within limit: Duration, _ calls: [@Sendable () async -> Void]) async {
  let done = FirstResult<Void>()
  let pending = Countdown(calls.count)
  let tasks = calls.map { call in
    Task {
      await call()
      if pending.tick() { done.finish(.success(())) }
    }
  }
  let timer = Task {
    try? await Task.sleep(for: limit)
    done.finish(.success(()))
  }
  if calls.isEmpty { done.finish(.success(())) }
  await withTaskCancellationHandler {
    try? await done.value()
  } onCancel: {
    done.finish(.success(()))
  }
  timer.cancel()
  for task in tasks { task.cancel() }
}

/// Counts finished calls down to zero.
private final class Countdown: Sendable {
  private let remaining: Mutex<Int>
  init(_ count: Int) { remaining = Mutex(count) }
  /// Records one finished call; true for the last.
  func tick() -> Bool { remaining.withLock { $0 -= 1; return $0 == 0 } }
}
