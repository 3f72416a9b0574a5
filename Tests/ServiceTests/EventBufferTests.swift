import RapportProtos
import Testing

@testable import RapportCore

@Suite(.hangLimit) struct EventBufferTests {
  func event(_ sequence: Int64) -> Rapport_Events_V1_Event { .with { $0.sequence = sequence } }

  @Test func aBurstIsTakenInOrderInBoundedBatchesAndTheEndIsReported() async throws {
    let buffer = EventBuffer()
    for n in 1...7 { buffer.push(event(Int64(n))) }
    buffer.finish(nil)
    var batches: [[Int64]] = []
    while let batch = try await buffer.next(max: 3) { batches.append(batch.map(\.sequence)) }
    #expect(batches == [[1, 2, 3], [4, 5, 6], [7]])
  }

  @Test func aWaitingApplierWakesForEachEventAndAFailedStreamThrowsAfterTheLastEvent() async throws {
    struct Broken: Error {}
    let buffer = EventBuffer()
    async let first = buffer.next(max: 10)
    try await Task.sleep(for: .milliseconds(20))
    buffer.push(event(1))
    #expect(try await first?.map(\.sequence) == [1])
    buffer.push(event(2))
    buffer.finish(Broken())
    #expect(try await buffer.next(max: 10)?.map(\.sequence) == [2])
    await #expect(throws: Broken.self) { try await buffer.next(max: 10) }
  }
}
