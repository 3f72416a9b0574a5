import Synchronization
import Testing

@testable import RapportCore

/// `ReadBatcher`'s own rules, with a fetch that records the keys of each statement it would run.
@Suite(.hangLimit) struct ReadBatcherTests {
  /// A fetch that holds every call until `open` is called, and records each call's keys.
  final class Gate: Sendable {
    let calls = Mutex<[[Int]]>([])
    let isOpen = Mutex(false)

    func fetch(_ keys: [Int]) async throws -> [Int: String] {
      calls.withLock { $0.append(keys) }
      while !isOpen.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(2)) }
      return Dictionary(uniqueKeysWithValues: keys.filter { $0 >= 0 }.map { ($0, "v\($0)") })
    }

    func open() { isOpen.withLock { $0 = true } }
  }

  func waitFor(_ condition: @escaping @Sendable () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while !condition() {
      #expect(ContinuousClock.now < deadline, "condition not met within 10 s")
      if ContinuousClock.now >= deadline { return }
      try await Task.sleep(for: .milliseconds(2))
    }
  }

  @Test func anIdleBatcherRunsOneStatementPerRead() async throws {
    let gate = Gate()
    gate.open()
    let batcher = ReadBatcher<Int, String>(maxInFlight: 1, maxBatch: 64) { try await gate.fetch($0) }
    for key in [1, 2, -3] {
      let value = try await batcher.load(key)
      #expect(value == (key >= 0 ? "v\(key)" : nil))
    }
    #expect(gate.calls.withLock { $0 } == [[1], [2], [-3]])
  }

  @Test func readsArrivingWhileStatementsRunShareTheNextStatementAndEachGetsItsOwnValue() async throws {
    let gate = Gate()
    let batcher = ReadBatcher<Int, String>(maxInFlight: 1, maxBatch: 4) { try await gate.fetch($0) }
    try await withThrowingTaskGroup(of: (Int, String?).self) { group in
      group.addTask { (0, try await batcher.load(0)) }
      try await waitFor { gate.calls.withLock { $0.count } == 1 }
      // Ten reads (one key twice, one without a value) queue behind the running statement.
      for key in [1, 2, 3, 3, -4, 5, 6, 7, 8, 9] { group.addTask { (key, try await batcher.load(key)) } }
      try await Task.sleep(for: .milliseconds(50))
      gate.open()
      var answers: [(Int, String?)] = []
      for try await answer in group { answers.append(answer) }
      for (key, value) in answers { #expect(value == (key >= 0 ? "v\(key)" : nil)) }
      #expect(answers.count == 11)
    }
    let calls = gate.calls.withLock { $0 }
    // The first read alone, then the queued ten in statements of at most four reads, every key once.
    #expect(calls.first == [0])
    #expect(calls.dropFirst().allSatisfy { $0.count <= 4 && Set($0).count == $0.count })
    #expect(Set(calls.dropFirst().flatMap { $0 }) == [-4, 1, 2, 3, 5, 6, 7, 8, 9])
    #expect(calls.count <= 4, "\(calls)")
  }

  @Test func aFailedStatementFailsTheReadsItCarriedAndTheNextReadRunsAfresh() async throws {
    struct Down: Error {}
    let failing = Mutex(true)
    let gate = Gate()
    let batcher = ReadBatcher<Int, String>(maxInFlight: 1, maxBatch: 64) { keys in
      let value = try await gate.fetch(keys)
      if failing.withLock({ $0 }) { throw Down() }
      return value
    }
    try await withThrowingTaskGroup(of: Bool.self) { group in
      for key in 0..<5 {
        group.addTask {
          do {
            _ = try await batcher.load(key)
            return false
          } catch is Down { return true }
        }
      }
      try await waitFor { gate.calls.withLock { $0.count } >= 1 }
      try await Task.sleep(for: .milliseconds(30))
      gate.open()
      for try await failed in group { #expect(failed) }
    }
    failing.withLock { $0 = false }
    #expect(try await batcher.load(7) == "v7")
  }

  @Test func aCancelledWaitingReadLeavesAtOnceAndTheOthersAreAnswered() async throws {
    let gate = Gate()
    let batcher = ReadBatcher<Int, String>(maxInFlight: 1, maxBatch: 64) { try await gate.fetch($0) }
    let leader = Task { try await batcher.load(1) }
    try await waitFor { gate.calls.withLock { $0.count } == 1 }
    let waiting = Task { try await batcher.load(2) }
    let other = Task { try await batcher.load(3) }
    try await Task.sleep(for: .milliseconds(30))
    waiting.cancel()
    await #expect(throws: CancellationError.self) { try await waiting.value }
    gate.open()
    #expect(try await leader.value == "v1")
    #expect(try await other.value == "v3")
  }

  @Test func whenTheLeadingReadIsCancelledItsBatchIsLedByTheNextRead() async throws {
    let gate = Gate()
    let batcher = ReadBatcher<Int, String>(maxInFlight: 1, maxBatch: 64) { keys in
      // The statement of a cancelled caller fails, as a cancelled database call does.
      try Task.checkCancellation()
      return try await gate.fetch(keys)
    }
    let leader = Task { try await batcher.load(1) }
    try await waitFor { gate.calls.withLock { $0.count } == 1 }
    let first = Task { try await batcher.load(2) }
    let second = Task { try await batcher.load(3) }
    try await Task.sleep(for: .milliseconds(30))
    leader.cancel()
    await #expect(throws: CancellationError.self) { try await leader.value }
    gate.open()
    #expect(try await first.value == "v2")
    #expect(try await second.value == "v3")
  }
}
