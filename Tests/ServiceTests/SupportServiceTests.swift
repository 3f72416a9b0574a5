import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportProtos
import RapportTesting
@testable import SupportService
import Testing

typealias SupportClient = Rapport_Support_V1_SupportService.Client<HTTP2ClientTransport.Posix>

func withSupportService(_ body: @Sendable (SupportClient, DatabaseURL) async throws -> Void) async throws {
  let database = try await TestDatabase.create()
  let app = try SupportApp.build(config: testConfig("support", database), logger: testLogger("support"))
  try await withRunningService(app) { address in
    try await withClient(to: address) { client in try await body(SupportClient(wrapping: client), database) }
  }
}

func ticket(_ customer: String, requestID: String = "", subject: String = "Where is my parcel?") -> Rapport_Support_V1_OpenTicketRequest {
  .with {
    $0.requestID = requestID
    $0.customerID = customer
    $0.subject = subject
    $0.body = "It has not arrived."
    $0.channel = .email
  }
}

@Suite struct SupportServiceTests {
  @Test func openedTicketIsNewNormalPriorityAndEmitsTicketOpened() async throws {
    try await withSupportService { support, database in
      let customer = UUID().uuidString.lowercased()
      let opened = try await support.openTicket(ticket(customer)).ticket
      #expect(opened.status == .new)
      #expect(opened.priority == .normal)
      #expect(opened.customerID == customer)
      let read = try await support.getTicket(.with { $0.ticketID = opened.id }).ticket
      #expect(read == opened)
      let events = try await TestDatabase.scalar("SELECT count(*)::bigint FROM support.outbox WHERE type = 'TicketOpened'", on: database)
      #expect(events == 1)
    }
  }

  @Test func aRetriedRequestIdReturnsTheFirstTicketAndADifferentOneIsRefused() async throws {
    try await withSupportService { support, database in
      let customer = UUID().uuidString
      let first = try await support.openTicket(ticket(customer, requestID: "mail-1"))
      let again = try await support.openTicket(ticket(customer, requestID: "mail-1"))
      #expect(again.replayed)
      #expect(again.ticket == first.ticket)
      await expectStatus(.failedPrecondition) {
        try await support.openTicket(ticket(customer, requestID: "mail-1", subject: "Other"))
      }
      let tickets = try await count("support.tickets", database)
      #expect(tickets == 1)
    }
  }

  @Test func listingFiltersOpenTicketsNewestFirstAndPages() async throws {
    try await withSupportService { support, _ in
      let customer = UUID().uuidString
      var opened: [String] = []
      for index in 0..<3 { opened.append(try await support.openTicket(ticket(customer, subject: "T\(index)")).ticket.id) }
      _ = try await support.openTicket(ticket(UUID().uuidString))
      let first = try await support.listTickets(.with {
        $0.customerID = customer
        $0.onlyOpen = true
        $0.pageSize = 2
      })
      #expect(first.tickets.map(\.id) == [opened[2], opened[1]])
      let second = try await support.listTickets(.with {
        $0.customerID = customer
        $0.pageSize = 2
        $0.pageToken = first.nextPageToken
      })
      #expect(second.tickets.map(\.id) == [opened[0]])
      #expect(second.nextPageToken.isEmpty)
    }
  }

  @Test func invalidTicketsNameTheFieldAndStoreNothing() async throws {
    try await withSupportService { support, database in
      let customer = UUID().uuidString
      var request = ticket(customer)
      request.subject = "  "
      await expectStatus(.invalidArgument, field: "subject") { try await support.openTicket(request) }
      request = ticket(customer)
      request.body = String(repeating: "b", count: 20_001)
      await expectStatus(.invalidArgument, field: "body") { try await support.openTicket(request) }
      request = ticket("nobody")
      await expectStatus(.invalidArgument, field: "customer_id") { try await support.openTicket(request) }
      request = ticket(customer)
      request.priority = .UNRECOGNIZED(42)
      await expectStatus(.invalidArgument, field: "priority") { try await support.openTicket(request) }
      let tickets = try await count("support.tickets", database)
      #expect(tickets == 0)
      await expectStatus(.notFound) { try await support.getTicket(.with { $0.ticketID = UUID().uuidString }) }
    }
  }
}
