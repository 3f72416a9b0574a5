import CustomerService
import Foundation
import GRPCCore
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import Testing

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

/// What every RPC gets from the platform's interceptors, whatever its handler remembers: bounded text
/// without NUL characters, page tokens that cannot overflow, request ids, metrics.
@Suite(.hangLimit) struct RequestBoundsTests {
  @Test func aNulCharacterInAnyTextFieldIsInvalidArgumentNamingTheFieldAndStoresNothing() async throws {
    try await withSupport(orders: true) { env in
      let customer = try await env.customer()
      await expectStatus(.invalidArgument, field: "given_name", mentioning: "NUL") {
        try await env.customers.createCustomer(.with {
          $0.email = "nul@example.com"
          $0.givenName = "A\u{0}da"
        })
      }
      await expectStatus(.invalidArgument, field: "lines[1].title", mentioning: "NUL") {
        try await env.orders!.placeOrder(order("nul-1", customer: customer).changed { $0.lines[1].title = "Tea\u{0}" })
      }
      await expectStatus(.invalidArgument, field: "body", mentioning: "NUL") {
        try await env.support.openTicket(.with {
          $0.customerID = customer
          $0.subject = "Broken"
          $0.body = "It\u{0}broke"
        })
      }
      await expectStatus(.invalidArgument, field: "identities[0].value", mentioning: "NUL") {
        try await env.customers.resolveCustomer(.with {
          $0.identities = [.with {
            $0.kind = .email
            $0.value = "x\u{0}@example.com"
          }]
        })
      }
      #expect(try await count("customer.customers", env.database) == 1)
      #expect(try await count("orders.orders", env.database) == 0)
      #expect(try await count("support.tickets", env.database) == 0)
    }
  }

  @Test func oversizedStringsAndListsAreRefusedBeforeAnyHandler() async throws {
    try await withSupport { env in
      // A 1 MB event-type name, and more types than the feed allows.
      for types in [[String(repeating: "x", count: 1_000_000)], (0..<100).map { "T\($0)" }] {
        await expectStatus(.invalidArgument) {
          try await env.feed.subscribe(.with { $0.types = types }) { response in
            for try await _ in response.messages {}
          }
        }
      }
      await expectStatus(.invalidArgument, field: "types[1]") {
        try await env.feed.subscribe(.with { $0.types = ["TicketOpened", String(repeating: "y", count: 200)] }) {
          response in for try await _ in response.messages {}
        }
      }
      await expectStatus(.invalidArgument, field: "hints.tags", mentioning: "at most 10000 entries") {
        try await env.customers.resolveCustomer(.with {
          $0.identities = [.with {
            $0.kind = .email
            $0.value = "many-tags@example.com"
          }]
          $0.hints.tags = (0...10_000).map { "t\($0)" }
        })
      }
      let stored = try await count("customer.customers", env.database)
      #expect(stored == 0)
    }
  }

  @Test func aPageTokenWhoseNumberOverflowsIsInvalidArgumentOnEveryListRPC() async throws {
    let token = Data("9223372036854775807|\(UUID().uuidString.lowercased())".utf8).base64EncodedString()
    try await withSupport(orders: true) { env in
      let customer = try await env.customer()
      let company = try await env.customers.createCompany(.with { $0.company.legalName = "Acme" }).company.id
      await expectStatus(.invalidArgument, field: "page_token") {
        try await env.customers.searchCustomers(.with { $0.pageToken = token })
      }
      await expectStatus(.invalidArgument, field: "page_token") {
        try await env.customers.listInteractions(.with {
          $0.customerID = customer
          $0.pageToken = token
        })
      }
      await expectStatus(.invalidArgument, field: "page_token") {
        try await env.customers.listCompanies(.with { $0.pageToken = token })
      }
      await expectStatus(.invalidArgument, field: "page_token") {
        try await env.customers.listCompanyContacts(.with {
          $0.companyID = company
          $0.pageToken = token
        })
      }
      await expectStatus(.invalidArgument, field: "page_token") {
        try await env.orders!.listOrders(.with {
          $0.customerID = customer
          $0.pageToken = token
        })
      }
      await expectStatus(.invalidArgument, field: "page_token") {
        try await env.support.listTickets(.with {
          $0.customerID = customer
          $0.pageToken = token
        })
      }
    }
  }

  @Test func everyResponseCarriesTheRequestIdAndMetricsCountCallsByMethodAndCode() async throws {
    let database = try await TestDatabase.create()
    var config = testConfig("customer", database)
    config.metricsAddress = HostPort(host: "127.0.0.1", port: 0)
    let app = try CustomerApp.build(config: config, logger: testLogger("customer"))
    try await withRunningService(app) { address in
      try await withClient(to: address) { client in
        let customers = CustomerClient(wrapping: client)
        let created = try await customers.createCustomer(
          .with { $0.email = "rid@example.com" }, metadata: ["x-request-id": "shop-42"]
        ) { response in response.trailingMetadata }
        #expect(created[stringValues: "x-request-id"].map { $0 } == ["shop-42"])
        do {
          _ = try await customers.getCustomer(.with { $0.customerID = UUID().uuidString })
          Issue.record("expected NOT_FOUND")
        } catch let error as RPCError {
          #expect(error.code == .notFound)
          let id = error.metadata[stringValues: "x-request-id"].map { $0 }
          #expect(id.count == 1 && UUID(uuidString: id[0]) != nil, "a generated id: \(id)")
        }
      }
      let get = "rapport.customer.v1.CustomerService/GetCustomer"
      #expect(app.metrics.calls("rapport.customer.v1.CustomerService/CreateCustomer", code: .ok) == 1)
      #expect(app.metrics.calls(get, code: .notFound) == 1)
      let endpoint = try await #require(app.metricsEndpoint).listeningAddress()
      let (body, response) = try await URLSession.shared.data(from: URL(string: "http://\(endpoint)/metrics")!)
      let text = String(decoding: body, as: UTF8.self)
      #expect((response as? HTTPURLResponse)?.statusCode == 200)
      #expect(text.contains("rpc_server_calls_total{method=\"\(get)\",code=\"NOT_FOUND\"} 1"), "\(text)")
      #expect(text.contains("rpc_server_duration_seconds_count{method=\"\(get)\"} 1"))
      #expect(text.contains("rpc_server_in_flight{method=\"\(get)\"} 0"))
    }
  }
}
