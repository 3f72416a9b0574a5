import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportProtos
import RapportTesting
import OrderService
@testable import SupportService
import Testing

typealias SupportClient = Rapport_Support_V1_SupportService.Client<HTTP2ClientTransport.Posix>


/// A support service with the customer service it checks (and, when asked, the order service).
struct SupportEnv: Sendable {
  let support: SupportClient
  /// The support service's event feed (same address).
  let feed: Rapport_Events_V1_EventFeed.Client<HTTP2ClientTransport.Posix>
  let customers: CustomerClient
  let orders: OrderClient?
  let database: DatabaseURL
  let clock: ManualClock

  /// Creates a customer and returns its id.
  func customer(_ name: String = "customer") async throws -> String {
    try await customers.createCustomer(.with { $0.email = "\(name)-\(UUID().uuidString.prefix(8))@example.com" }).customer.id
  }

  /// Events of `type` in the support outbox, in sequence order.
  func events(_ type: String) async throws -> [Rapport_Events_V1_Event] {
    try await outboxEvents("support", type: type, database)
  }
}

/// Runs customer (and with `orders`, order) and support services on one fresh database. The support
/// service reads time from the system clock, or with `clock` from a `ManualClock` the test moves; it
/// scans SLA due times and solved tickets every 50 ms.
func withSupport(
  orders: Bool = false, clock manual: ManualClock? = nil, closeSolvedAfter: Duration = .seconds(7 * 86_400),
  _ body: @Sendable (SupportEnv) async throws -> Void
) async throws {
  try await withCustomerService { customers, database, customerAt in
    let clock = manual ?? ManualClock()
    let timing = SupportApp.Timing(
      scanInterval: .milliseconds(50), closeSolvedAfter: closeSolvedAfter, clock: manual == nil ? .system : clock.wallClock)
    @Sendable func run(orderAt: HostPort?, orders: OrderClient?) async throws {
      let app = try SupportApp.build(
        config: testConfig("support", database), customerAddress: customerAt, orderAddress: orderAt,
        // 10 s as in the other harnesses: two calls to customer missed 5 s on a loaded CI machine (fcddcbd).
        upstreamTimeout: .seconds(10), timing: timing, logger: testLogger("support"))
      try await withRunningService(app) { address in
        try await withClient(to: address) { client in
          try await body(
            SupportEnv(
              support: SupportClient(wrapping: client), feed: .init(wrapping: client), customers: customers, orders: orders, database: database, clock: clock))
        }
      }
    }
    guard orders else { return try await run(orderAt: nil, orders: nil) }
    let orderApp = try OrderApp.build(
      config: testConfig("order", database), customerAddress: customerAt, customerTimeout: .seconds(10),
      logger: testLogger("order"))
    try await withRunningService(orderApp) { orderAt in
      try await withClient(to: orderAt) { client in try await run(orderAt: orderAt, orders: OrderClient(wrapping: client)) }
    }
  }
}

/// `withSupport` for tests that need only the support client and the database.
func withSupportService(_ body: @Sendable (SupportClient, DatabaseURL, SupportEnv) async throws -> Void) async throws {
  try await withSupport { env in try await body(env.support, env.database, env) }
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

@Suite(.hangLimit) struct SupportServiceTests {
  @Test func openedTicketIsNewNormalPriorityAndEmitsTicketOpened() async throws {
    try await withSupportService { support, database, env in
      let customer = try await env.customer()
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
    try await withSupportService { support, database, env in
      let customer = try await env.customer()
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
    try await withSupportService { support, _, env in
      let customer = try await env.customer()
      var opened: [String] = []
      for index in 0..<3 { opened.append(try await support.openTicket(ticket(customer, subject: "T\(index)")).ticket.id) }
      _ = try await support.openTicket(ticket(try await env.customer()))
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
    try await withSupportService { support, database, env in
      let customer = try await env.customer()
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
