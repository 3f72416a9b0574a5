import CustomerService
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportProtos
import RapportTesting
import Testing

typealias CustomerClient = Rapport_Customer_V1_CustomerService.Client<HTTP2ClientTransport.Posix>

/// Runs the customer service on a fresh database and hands a client to `body`.
func withCustomerService(
  _ body: @Sendable (CustomerClient, DatabaseURL, HostPort) async throws -> Void
) async throws {
  let database = try await TestDatabase.create()
  let app = try CustomerApp.build(config: testConfig("customer", database), logger: testLogger("customer"))
  try await withRunningService(app) { address in
    try await withClient(to: address) { client in
      try await body(CustomerClient(wrapping: client), database, address)
    }
  }
}

@Suite(.hangLimit) struct CustomerServiceTests {
  @Test func createdCustomerCanBeReadByIdAndByEmail() async throws {
    try await withCustomerService { customers, _, _ in
      let created = try await customers.createCustomer(.with {
        $0.email = "  Ada.Lovelace@Example.COM "
        $0.givenName = "Ada"
        $0.familyName = "Lovelace"
        $0.channel = .web
      }).customer
      #expect(created.email == "ada.lovelace@example.com")
      #expect(UUID(uuidString: created.id) != nil)
      let byID = try await customers.getCustomer(.with { $0.customerID = created.id }).customer
      #expect(byID == created)
      let byEmail = try await customers.findCustomer(.with { $0.email = "ADA.lovelace@example.com" }).customer
      #expect(byEmail.id == created.id)
      #expect(byEmail.givenName == "Ada")
      #expect(byEmail.channel == .web)
    }
  }

  @Test func aCustomerIsFoundByAnyIdentity() async throws {
    try await withCustomerService { customers, _, _ in
      let created = try await customers.resolveCustomer(.with {
        $0.channel = .marketplace
        $0.identities = [
          .with { $0.kind = .externalID; $0.channel = .marketplace; $0.value = "AMZ-991" },
          .with { $0.kind = .phone; $0.value = "+44 20 7946 0958" },
        ]
      }).customer
      func find(_ identity: Rapport_Customer_V1_Identity) async throws -> String {
        try await customers.findCustomer(.with { $0.identity = identity }).customer.id
      }
      #expect(try await find(.with { $0.kind = .externalID; $0.channel = .marketplace; $0.value = "AMZ-991" }) == created.id)
      #expect(try await find(.with { $0.kind = .phone; $0.value = "+442079460958" }) == created.id)
      await expectStatus(.notFound, mentioning: "no customer has this identity") {
        try await find(.with { $0.kind = .externalID; $0.channel = .web; $0.value = "AMZ-991" })
      }
      await expectStatus(.invalidArgument, field: "identity.channel") {
        try await find(.with { $0.kind = .externalID; $0.value = "AMZ-991" })
      }
      await expectStatus(.invalidArgument, field: "identity") {
        try await customers.findCustomer(.with {
          $0.email = "a@example.com"
          $0.identity = .with { $0.kind = .phone; $0.value = "+442079460958" }
        })
      }
    }
  }

  @Test func aSecondCustomerWithTheSameEmailIsRefused() async throws {
    try await withCustomerService { customers, database, _ in
      _ = try await customers.createCustomer(.with { $0.email = "grace@example.com" })
      await expectStatus(.alreadyExists) {
        try await customers.createCustomer(.with { $0.email = "GRACE@example.com" })
      }
      let observed1 = try await count("customer.customers", database)
      #expect(observed1 == 1)
      let observed2 = try await count("customer.outbox", database)
      #expect(observed2 == 1)
    }
  }

  @Test func concurrentCreatesOfOneEmailYieldOneCustomer() async throws {
    try await withCustomerService { customers, database, _ in
      let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
        for _ in 0..<8 {
          group.addTask { (try? await customers.createCustomer(.with { $0.email = "race@example.com" })) != nil }
        }
        return try await group.reduce(into: [Bool]()) { $0.append($1) }
      }
      #expect(outcomes.filter { $0 }.count == 1)
      let observed3 = try await count("customer.customers", database)
      #expect(observed3 == 1)
    }
  }

  /// Reads by id are batched under load (`CustomerStore.byID`): each concurrent read still gets its own
  /// customer, NOT_FOUND, or the survivor of a merge, and a read after an acknowledged write sees it.
  @Test func concurrentReadsByIdEachGetTheirOwnAnswerAndSeeEveryAcknowledgedWrite() async throws {
    try await withCustomerService { customers, _, _ in
      var created: [String] = []
      for n in 0..<20 { created.append(try await customers.createCustomer(.with { $0.email = "batch-\(n)@example.com"; $0.givenName = "N\(n)" }).customer.id) }
      let ids = created
      _ = try await customers.mergeCustomers(.with { $0.survivorID = ids[0]; $0.duplicateID = ids[1] })
      let unknown = UUID().uuidString.lowercased()
      let answers = try await withThrowingTaskGroup(of: (String, String?, String).self) { group in
        for round in 0..<10 {
          for id in ids + [unknown] {
            group.addTask {
              do {
                let response = try await customers.getCustomer(.with { $0.customerID = id })
                return (id, response.customer.id, response.mergedFrom + "|\(round)|" + response.customer.givenName)
              } catch let error as RPCError where error.code == .notFound {
                return (id, nil, "")
              }
            }
          }
        }
        return try await group.reduce(into: [(String, String?, String)]()) { $0.append($1) }
      }
      #expect(answers.count == 210)
      for (asked, got, detail) in answers {
        switch asked {
        case unknown: #expect(got == nil)
        case ids[1]: #expect(got == ids[0] && detail.hasPrefix(ids[1] + "|"))
        default:
          let n = ids.firstIndex(of: asked) ?? -1
          #expect(got == asked && detail.hasSuffix("|N\(n)"), "\(asked): \(String(describing: got)) \(detail)")
        }
      }
      // Reads racing each other and a write: every read that starts after the write's acknowledgement sees it.
      for n in 0..<5 {
        let current = try await customers.getCustomer(.with { $0.customerID = ids[2] }).customer
        _ = try await customers.updateCustomer(.with {
          $0.customerID = ids[2]
          $0.expectedVersion = current.version
          $0.customer.givenName = "Renamed \(n)"
          $0.updateMask = .with { $0.paths = ["given_name"] }
        })
        let seen = try await withThrowingTaskGroup(of: String.self) { group in
          for _ in 0..<16 { group.addTask { try await customers.getCustomer(.with { $0.customerID = ids[2] }).customer.givenName } }
          return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(seen == Array(repeating: "Renamed \(n)", count: 16))
      }
    }
  }

  @Test(arguments: [
    ("email", Rapport_Customer_V1_CreateCustomerRequest.with { $0.email = "" }),
    ("email", .with { $0.email = "not-an-email" }),
    ("email", .with { $0.email = "a@b" }),
    ("email", .with { $0.email = String(repeating: "a", count: 250) + "@example.com" }),
    ("given_name", .with {
      $0.email = "x@example.com"
      $0.givenName = String(repeating: "g", count: 201)
    }),
    ("phone", .with {
      $0.email = "x@example.com"
      $0.phone = "call me maybe"
    }),
    ("channel", .with {
      $0.email = "x@example.com"
      $0.channel = .UNRECOGNIZED(99)
    }),
  ])
  func invalidCreateRequestsNameTheFieldAndStoreNothing(
    field: String, request: Rapport_Customer_V1_CreateCustomerRequest
  ) async throws {
    try await withCustomerService { customers, database, _ in
      await expectStatus(.invalidArgument, field: field) { try await customers.createCustomer(request) }
      let observed4 = try await count("customer.customers", database)
      #expect(observed4 == 0)
      let observed5 = try await count("customer.outbox", database)
      #expect(observed5 == 0)
    }
  }

  @Test func unknownAndMalformedIdsGetPreciseStatuses() async throws {
    try await withCustomerService { customers, _, _ in
      await expectStatus(.notFound) {
        try await customers.getCustomer(.with { $0.customerID = UUID().uuidString })
      }
      await expectStatus(.invalidArgument, field: "customer_id") {
        try await customers.getCustomer(.with { $0.customerID = "42" })
      }
      await expectStatus(.notFound) { try await customers.findCustomer(.with { $0.email = "nobody@example.com" }) }
      await expectStatus(.invalidArgument, field: "email") { try await customers.findCustomer(.with { $0.email = "" }) }
    }
  }

  @Test func healthIsServing() async throws {
    try await withCustomerService { _, _, address in
      try await withClient(to: address) { client in
        let health = Grpc_Health_V1_Health.Client(wrapping: client)
        // The process and its service by name. NOT_SERVING is right while two database probes in a row
        // went unanswered for 2 s (a CI machine loaded by the tests around this one did that once), so
        // each is asked until it answers SERVING, for up to 30 s.
        for service in ["", "rapport.customer.v1.CustomerService"] {
          var observed = try await health.check(.with { $0.service = service }).status
          let deadline = ContinuousClock.now + .seconds(30)
          while observed != .serving && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(200))
            observed = try await health.check(.with { $0.service = service }).status
          }
          #expect(observed == .serving, "service '\(service)'")
        }
        await expectStatus(.notFound) { try await health.check(.with { $0.service = "nope" }) }
      }
    }
  }
}
