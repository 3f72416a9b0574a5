import Foundation
import Testing

@testable import RapportCore

@Suite(.hangLimit) struct RequestIDTests {
  @Test func generatedIdsAreDistinctUUIDsAndACallersIdIsKeptWhenPrintable() {
    let ids = (0..<10_000).map { _ in RequestID.accept(nil) }
    #expect(Set(ids).count == ids.count)
    #expect(ids.allSatisfy { UUID(uuidString: $0) != nil && $0 == $0.lowercased() })
    #expect(RequestID.accept("shop-42") == "shop-42")
    #expect(UUID(uuidString: RequestID.accept("bad id")) != nil)
    #expect(UUID(uuidString: RequestID.accept(String(repeating: "x", count: 129))) != nil)
  }
}
