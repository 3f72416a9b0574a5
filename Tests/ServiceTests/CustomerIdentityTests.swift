import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import Testing

func email(_ value: String) -> Rapport_Customer_V1_Identity {
  .with {
    $0.kind = .email
    $0.value = value
  }
}

func phone(_ value: String) -> Rapport_Customer_V1_Identity {
  .with {
    $0.kind = .phone
    $0.value = value
  }
}

func external(_ value: String, _ channel: Rapport_Common_V1_Channel) -> Rapport_Customer_V1_Identity {
  .with {
    $0.kind = .externalID
    $0.value = value
    $0.channel = channel
  }
}

/// Sendable wrapper for table-driven identity cases.
struct BadResolve: Sendable, CustomStringConvertible {
  let field: String
  let request: Rapport_Customer_V1_ResolveCustomerRequest
  var description: String { field }
}

@Suite(.hangLimit) struct CustomerIdentityTests {
  @Test func resolveCreatesOnceThenFindsByAnyIdentityAndAttachesNewOnes() async throws {
    try await withCustomerService { customers, database, _ in
      let first = try await customers.resolveCustomer(.with {
        $0.identities = [email(" Ada@Example.com "), phone("+44 (20) 7946-0958")]
        $0.channel = .store
        $0.hints = .with {
          $0.givenName = "Ada"
          $0.tags = ["VIP", "vip", "newsletter"]
          $0.preferences.language = "en-GB"
        }
      })
      #expect(first.created)
      #expect(first.customer.email == "ada@example.com")
      #expect(first.customer.phone == "+442079460958")
      #expect(first.customer.tags == ["newsletter", "vip"])
      #expect(first.customer.kind == .person)
      #expect(first.customer.state == .active)
      #expect(first.customer.version == 1)

      // Found by the phone alone (written differently), and the new app id is attached.
      let second = try await customers.resolveCustomer(.with {
        $0.identities = [phone("0044 20 7946 0958"), external("app-123", .mobile)]
        $0.hints.givenName = "Someone else"
      })
      #expect(!second.created)
      #expect(second.customer.id == first.customer.id)
      #expect(second.customer.givenName == "Ada")
      #expect(second.customer.identities.count == 3)
      #expect(second.customer.version == 2)

      // Another customer's email in the request is reported, not moved.
      let other = try await customers.createCustomer(.with { $0.email = "grace@example.com" }).customer
      let third = try await customers.resolveCustomer(.with {
        $0.identities = [external("app-123", .mobile), email("grace@example.com")]
      })
      #expect(third.customer.id == first.customer.id)
      #expect(third.conflicts.map(\.customerID) == [other.id])
      let owners = try await count("customer.identities WHERE customer_id = '\(other.id)'", database)
      #expect(owners == 1)
      let events = try await eventTypes("customer", database)
      #expect(events == ["CustomerCreated", "CustomerIdentityChanged", "CustomerCreated"])
    }
  }

  @Test func concurrentResolutionsOfOneNewIdentityYieldOneCustomer() async throws {
    try await withCustomerService { customers, database, _ in
      let ids = try await withThrowingTaskGroup(of: String.self) { group in
        for index in 0..<10 {
          group.addTask {
            try await customers.resolveCustomer(.with {
              $0.identities = index.isMultiple(of: 2)
                ? [email("race@example.com")] : [external("loyalty-7", .store), email("race@example.com")]
            }).customer.id
          }
        }
        return try await group.reduce(into: Set<String>()) { $0.insert($1) }
      }
      #expect(ids.count == 1)
      let stored = try await count("customer.customers", database)
      #expect(stored == 1)
      let created = try await count("customer.outbox WHERE type = 'CustomerCreated'", database)
      #expect(created == 1)
    }
  }

  @Test func identitiesCanBeAddedAndRemovedButNeverShared() async throws {
    try await withCustomerService { customers, _, _ in
      let ada = try await customers.createCustomer(.with { $0.email = "ada@example.com" }).customer
      let grace = try await customers.createCustomer(.with { $0.email = "grace@example.com" }).customer
      let added = try await customers.addIdentity(.with {
        $0.customerID = ada.id
        $0.identity = external("buyer-9", .marketplace)
      }).customer
      #expect(added.identities.contains(external("buyer-9", .marketplace)))
      // Adding it again is a no-op; giving it to Grace is refused.
      let again = try await customers.addIdentity(.with {
        $0.customerID = ada.id
        $0.identity = external("buyer-9", .marketplace)
      }).customer
      #expect(again.version == added.version)
      await expectStatus(.alreadyExists) {
        try await customers.addIdentity(.with {
          $0.customerID = grace.id
          $0.identity = email("ADA@example.com")
        })
      }
      let removed = try await customers.removeIdentity(.with {
        $0.customerID = ada.id
        $0.identity = external("buyer-9", .marketplace)
      }).customer
      #expect(removed.identities.count == 1)
      await expectStatus(.notFound) {
        try await customers.removeIdentity(.with {
          $0.customerID = grace.id
          $0.identity = email("ada@example.com")
        })
      }
    }
  }

  @Test(arguments: [
    BadResolve(field: "identities", request: .init()),
    BadResolve(field: "identities", request: .with { $0.identities = (0..<11).map { email("a\($0)@example.com") } }),
    BadResolve(field: "identities[0].kind", request: .with { $0.identities = [.with { $0.value = "x" }] }),
    BadResolve(field: "identities[0].kind", request: .with {
      $0.identities = [.with {
        $0.kind = .UNRECOGNIZED(9)
        $0.value = "x"
      }]
    }),
    BadResolve(field: "identities[0].value", request: .with { $0.identities = [email("nope")] }),
    BadResolve(field: "identities[1].value", request: .with { $0.identities = [email("a@example.com"), phone("030 1234567")] }),
    BadResolve(field: "identities[0].value", request: .with { $0.identities = [phone("+12")] }),
    BadResolve(field: "identities[0].value", request: .with { $0.identities = [phone("+49 30 CALL ME")] }),
    BadResolve(field: "identities[0].channel", request: .with { $0.identities = [external("x", .unspecified)] }),
    BadResolve(field: "identities[0].value", request: .with { $0.identities = [external(String(repeating: "x", count: 129), .web)] }),
    BadResolve(field: "hints.given_name", request: .with {
      $0.identities = [email("a@example.com")]
      $0.hints.givenName = String(repeating: "n", count: 201)
    }),
    BadResolve(field: "hints.tags", request: .with {
      $0.identities = [email("a@example.com")]
      $0.hints.tags = ["no spaces please"]
    }),
    BadResolve(field: "hints.preferences.currency", request: .with {
      $0.identities = [email("a@example.com")]
      $0.hints.preferences.currency = "EURO"
    }),
    BadResolve(field: "hints.preferences.language", request: .with {
      $0.identities = [email("a@example.com")]
      $0.hints.preferences.language = "english please"
    }),
    BadResolve(field: "channel", request: .with {
      $0.identities = [email("a@example.com")]
      $0.channel = .UNRECOGNIZED(42)
    }),
  ])
  func invalidResolutionsNameTheFieldAndStoreNothing(_ bad: BadResolve) async throws {
    try await withCustomerService { customers, database, _ in
      await expectStatus(.invalidArgument, field: bad.field) { try await customers.resolveCustomer(bad.request) }
      let stored = try await count("customer.customers", database)
      #expect(stored == 0)
      let events = try await count("customer.outbox", database)
      #expect(events == 0)
    }
  }
}
