import RapportProtos
import Synchronization

/// Events received but not applied yet, shared by a subscription's reader and its applier.
final class EventBuffer: Sendable {
  private struct State: ~Copyable {
    var events: [Rapport_Events_V1_Event] = []
    var finished = false
    var error: (any Error)?
    /// The applier, waiting for events.
    var waiter: CheckedContinuation<Void, Never>?
  }

  private let state = Mutex(State())

  var count: Int { state.withLock { $0.events.count } }

  func push(_ event: Rapport_Events_V1_Event) {
    state.withLock { state -> CheckedContinuation<Void, Never>? in
      state.events.append(event)
      defer { state.waiter = nil }
      return state.waiter
    }?.resume()
  }

  /// The reader is done; `error` when the stream failed.
  func finish(_ error: (any Error)?) {
    state.withLock { state -> CheckedContinuation<Void, Never>? in
      state.finished = true
      state.error = error
      defer { state.waiter = nil }
      return state.waiter
    }?.resume()
  }

  /// Up to `max` events as soon as there are any; nil once the stream ended and everything was taken
  /// (throws the stream's error instead, if it failed). One caller at a time.
  func next(max: Int) async throws -> [Rapport_Events_V1_Event]? {
    while true {
      let (batch, ended, error) = state.withLock { state -> ([Rapport_Events_V1_Event], Bool, (any Error)?) in
        let batch = Array(state.events.prefix(max))
        state.events.removeFirst(batch.count)
        return (batch, state.finished, state.error)
      }
      if !batch.isEmpty { return batch }
      if ended {
        if let error { throw error }
        return nil
      }
      await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
        let ready = state.withLock { state -> Bool in
          if !state.events.isEmpty || state.finished { return true }
          state.waiter = waiter
          return false
        }
        if ready { waiter.resume() }
      }
    }
  }
}
