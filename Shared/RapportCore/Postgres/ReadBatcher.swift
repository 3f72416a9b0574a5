import Synchronization

/// Coalesces concurrent point reads of one kind into one statement ("smart batching"): a read starts a
/// statement at once while fewer than `maxInFlight` of them run; otherwise it waits, and the read whose
/// statement finishes next takes every waiting key (up to `maxBatch`) into the next one. An idle service
/// therefore runs one statement per read, as before, and a loaded one runs one statement per batch:
/// fewer round trips, pool leases and wake-ups per read, for the service and for PostgreSQL.
///
/// Not a cache: every statement starts after each read it answers arrived, so it sees every write
/// acknowledged before that read.
///
/// The statement runs in the task of the read that leads the batch (no extra task, no extra hop).
/// Cancellation: a waiting read that is cancelled leaves at once with `CancellationError`; when the leader
/// is cancelled, its batch goes back to the front of the queue and the next read leads it, so one caller's
/// deadline never fails another's read.
public final class ReadBatcher<Key: Hashable & Sendable, Value: Sendable>: Sendable {
  public typealias Fetch = @Sendable ([Key]) async throws -> [Key: Value]

  private enum Turn {
    case done(Value?)
    case lead
  }

  private enum Start { case cancelled, lead, queued }

  private struct Waiter {
    let id: UInt64
    let key: Key
    let continuation: CheckedContinuation<Turn, any Error>
  }

  private struct State {
    var nextID: UInt64 = 0
    var running = 0
    var queue: [Waiter] = []
    /// Reads inside a running statement, by waiter id (the leader is not among them).
    var inFlight: [UInt64: Waiter] = [:]

    mutating func take(_ count: Int) -> [Waiter] {
      let taken = Array(queue.prefix(count))
      queue.removeFirst(taken.count)
      for waiter in taken { inFlight[waiter.id] = waiter }
      return taken
    }

    /// Ends a batch: the next queued read leads the next one, or one fewer statement runs.
    mutating func handOff() -> Waiter? {
      if queue.isEmpty {
        running -= 1
        return nil
      }
      return queue.removeFirst()
    }
  }

  private let state = Mutex(State())
  private let maxInFlight: Int
  private let maxBatch: Int
  private let fetch: Fetch

  /// - Parameters:
  ///   - maxInFlight: statements running at once before reads wait to be batched (≥ 1).
  ///   - maxBatch: most keys in one statement (≥ 1).
  ///   - fetch: reads the values of distinct keys; a key without a value is absent from the result.
  public init(maxInFlight: Int, maxBatch: Int, fetch: @escaping Fetch) {
    self.maxInFlight = max(1, maxInFlight)
    self.maxBatch = max(1, maxBatch)
    self.fetch = fetch
  }

  /// The value of `key`, or nil when it has none.
  public func load(_ key: Key) async throws -> Value? {
    let id = state.withLock { state in
      state.nextID &+= 1
      return state.nextID
    }
    let turn = try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Turn, any Error>) in
        // Under the lock, so a cancellation either is seen here or finds the read queued.
        let start = state.withLock { state -> Start in
          if Task.isCancelled { return .cancelled }
          if state.running < maxInFlight {
            state.running += 1
            return .lead
          }
          state.queue.append(Waiter(id: id, key: key, continuation: continuation))
          return .queued
        }
        switch start {
        case .cancelled: continuation.resume(throwing: CancellationError())
        case .lead: continuation.resume(returning: .lead)
        case .queued: break
        }
      }
    } onCancel: {
      let waiter = state.withLock { state -> Waiter? in
        if let index = state.queue.firstIndex(where: { $0.id == id }) { return state.queue.remove(at: index) }
        return state.inFlight.removeValue(forKey: id)
      }
      waiter?.continuation.resume(throwing: CancellationError())
    }
    switch turn {
    case .done(let value): return value
    case .lead: return try await lead(key)
    }
  }

  /// Runs one statement for `key` and the reads queued behind it, answers them, and hands the lead on.
  private func lead(_ key: Key) async throws -> Value? {
    let batch = state.withLock { $0.take(maxBatch - 1) }
    var keys = [key]
    var seen: Set<Key> = [key]
    for waiter in batch where seen.insert(waiter.key).inserted { keys.append(waiter.key) }
    let result: Result<[Key: Value], any Error>
    do {
      result = .success(try await fetch(keys))
    } catch {
      result = .failure(error)
    }
    let cancelled = Task.isCancelled
    let (answered, next) = state.withLock { state -> ([Waiter], Waiter?) in
      let mine = batch.compactMap { state.inFlight.removeValue(forKey: $0.id) }
      if cancelled, case .failure = result {
        // The leader's caller gave up: its batch waits for the next leader instead of failing.
        state.queue.insert(contentsOf: mine, at: 0)
        return ([], state.handOff())
      }
      return (mine, state.handOff())
    }
    for waiter in answered {
      switch result {
      case .success(let values): waiter.continuation.resume(returning: .done(values[waiter.key]))
      case .failure(let error): waiter.continuation.resume(throwing: error)
      }
    }
    next?.continuation.resume(returning: .lead)
    return try result.get()[key]
  }
}

/// Reads every distinct key of `keys` at once (one child task each) and answers in the order asked, a
/// repeated key with the same value: a batch RPC's handler. The first failure fails the batch.
public func readEach<Key: Hashable & Sendable, Value: Sendable>(
  _ keys: [Key], _ read: @escaping @Sendable (Key) async throws -> Value
) async throws -> [Value] {
  var distinct: [Key] = []
  var seen: Set<Key> = []
  for key in keys where seen.insert(key).inserted { distinct.append(key) }
  let values = try await withThrowingTaskGroup(of: (Key, Value).self) { group in
    for key in distinct { group.addTask { (key, try await read(key)) } }
    return try await group.reduce(into: [Key: Value]()) { $0[$1.0] = $1.1 }
  }
  return try inOrder(keys, values) { $0 }
}

/// A batch read's answers in the order the ids were asked (repeats included), from values read once per
/// distinct id; `make` turns a value into the answer.
public func inOrder<Key: Hashable, Value, Answer>(
  _ keys: [Key], _ found: [Key: Value], _ make: (Value) -> Answer
) throws -> [Answer] {
  try keys.map { key in
    guard let value = found[key] else { throw RPCFailure.internal("a batch read lost a key") }
    return make(value)
  }
}
