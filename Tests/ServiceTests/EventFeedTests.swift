import CustomerService
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportProtos
import RapportTesting
import Synchronization
import Testing

@Suite(.hangLimit) struct EventFeedTests {
  @Test func feedSendsTheBacklogInOrderThenLiveEventsAndResumesFromACursor() async throws {
    try await withCustomerService { customers, _, address in
      var ids: [String] = []
      for index in 0..<3 {
        ids.append(try await customers.createCustomer(.with { $0.email = "backlog\(index)@example.com" }).customer.id)
      }
      let received = try await withClient(to: address) { client in
        let feed = Rapport_Events_V1_EventFeed.Client(wrapping: client)
        return try await feed.subscribe(.with { $0.afterSequence = 0 }) { response in
          var events: [Rapport_Events_V1_Event] = []
          for try await event in response.messages {
            events.append(event)
            if events.count == 3 {
              // The backlog is in; this one arrives live, woken by LISTEN/NOTIFY.
              _ = try await customers.createCustomer(.with { $0.email = "live@example.com" })
            }
            if events.count == 4 { break }
          }
          return events
        }
      }
      #expect(received.map(\.type) == Array(repeating: "CustomerCreated", count: 4))
      #expect(Array(received.prefix(3).map(\.aggregateID)) == ids)
      #expect(received.map(\.sequence) == received.map(\.sequence).sorted())
      #expect(Set(received.map(\.sequence)).count == 4)
      guard case .customerCreated(let payload)? = received[0].payload else {
        Issue.record("payload is not CustomerCreated")
        return
      }
      #expect(payload.customerID == ids[0])

      // Resuming after the second event yields exactly the rest.
      let resumed = try await withClient(to: address) { client in
        try await Rapport_Events_V1_EventFeed.Client(wrapping: client).subscribe(
          .with { $0.afterSequence = received[1].sequence }
        ) { response in
          var events: [Int64] = []
          for try await event in response.messages {
            events.append(event.sequence)
            if events.count == 2 { break }
          }
          return events
        }
      }
      #expect(resumed == [received[2].sequence, received[3].sequence])
    }
  }

  @Test func typeFilterAndBadCursor() async throws {
    try await withCustomerService { customers, _, address in
      _ = try await customers.createCustomer(.with { $0.email = "one@example.com" })
      try await withClient(to: address) { client in
        let feed = Rapport_Events_V1_EventFeed.Client(wrapping: client)
        await expectStatus(.invalidArgument, field: "after_sequence") {
          try await feed.subscribe(.with { $0.afterSequence = -1 }) { response in
            for try await _ in response.messages {}
          }
        }
        // No event of an unknown type: the stream stays open and quiet until the deadline.
        var options = CallOptions.defaults
        options.timeout = .milliseconds(300)
        await expectStatus(.deadlineExceeded) {
          try await feed.subscribe(.with { $0.types = ["OrderPlaced"] }, options: options) { response in
            for try await event in response.messages { Issue.record("unexpected \(event.type)") }
          }
        }
      }
    }
  }
}
