import GRPCCore
import RapportCore
import Testing

/// `retryingUnavailable`, which `rapport seed` sends an import stream again with when a service refuses
/// it as UNAVAILABLE (no database here: the function only decides what to send again).
@Suite struct RetryingUnavailableTests {
  @Test func anUnavailableCallIsSentAgainUntilItAnswers() async throws {
    var calls = 0
    var heard: [Int] = []
    let answer = try await retryingUnavailable(backoff: .milliseconds(1), retrying: { _, attempt in heard.append(attempt) }) {
      calls += 1
      if calls < 3 { throw RPCError(code: .unavailable, message: "customer service unavailable") }
      return calls
    }
    #expect(answer == 3 && heard == [2, 3])
  }

  @Test func otherErrorsAndTheLastAttemptFail() async throws {
    var calls = 0
    await #expect(throws: RPCError.self) {
      try await retryingUnavailable(backoff: .milliseconds(1)) { () async throws -> Int in
        calls += 1
        throw RPCError(code: .invalidArgument, message: "row 7: quantity must be positive")
      }
    }
    #expect(calls == 1)
    calls = 0
    let error = await #expect(throws: RPCError.self) {
      try await retryingUnavailable(attempts: 3, backoff: .milliseconds(1)) { () async throws -> Int in
        calls += 1
        throw RPCError(code: .unavailable, message: "still down")
      }
    }
    #expect(calls == 3 && error?.code == .unavailable)
  }
}
