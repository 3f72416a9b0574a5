import Synchronization

/// Wakes event-feed streams when their service's outbox grows. A generation counter moves on every
/// notification; a stream remembers the generation before it reads and sleeps only while it is unchanged,
/// so no notification between its read and its sleep is missed.
public final class OutboxNotifier: Sendable {
  private struct State {
    var generation: UInt64 = 0
    var nextWaiter = 0
    var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    var cancelled: Set<Int> = []
    var closed = false
  }

  private let state = Mutex(State())

  public init() {}

  /// The current generation; read it before reading the outbox.
  public var generation: UInt64 { state.withLock { $0.generation } }

  /// True once `close()` was called (the process is draining).
  public var isClosed: Bool { state.withLock { $0.closed } }

  /// Registers a waiter; pass its id to `wait` and `cancel`.
  public func makeWaiter() -> Int {
    state.withLock { state in
      state.nextWaiter += 1
      return state.nextWaiter
    }
  }

  /// Sleeps until the generation passes `generation`, or the waiter is cancelled, or the notifier closes.
  public func wait(beyond generation: UInt64, waiter: Int) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let resumeNow = state.withLock { state -> Bool in
        if state.generation > generation || state.cancelled.contains(waiter) || state.closed { return true }
        state.waiters[waiter] = continuation
        return false
      }
      if resumeNow { continuation.resume() }
    }
  }

  /// True when the waiter was cancelled or the notifier closed: the stream should end.
  public func isFinished(_ waiter: Int) -> Bool {
    state.withLock { $0.closed || $0.cancelled.contains(waiter) }
  }

  /// Ends one waiter's sleep for good (its RPC was cancelled).
  public func cancel(_ waiter: Int) {
    let continuation = state.withLock { state in
      state.cancelled.insert(waiter)
      return state.waiters.removeValue(forKey: waiter)
    }
    continuation?.resume()
  }

  /// Forgets a finished waiter.
  public func remove(_ waiter: Int) {
    let continuation = state.withLock { state in
      state.cancelled.remove(waiter)
      return state.waiters.removeValue(forKey: waiter)
    }
    continuation?.resume()
  }

  /// Something was appended (or the listener reconnected and may have missed some): wake everyone.
  public func notify() {
    let continuations = state.withLock { state in
      state.generation += 1
      defer { state.waiters.removeAll() }
      return Array(state.waiters.values)
    }
    for continuation in continuations { continuation.resume() }
  }

  /// Wakes everyone and ends every stream: the process is draining.
  public func close() {
    let continuations = state.withLock { state in
      state.closed = true
      defer { state.waiters.removeAll() }
      return Array(state.waiters.values)
    }
    for continuation in continuations { continuation.resume() }
  }
}
