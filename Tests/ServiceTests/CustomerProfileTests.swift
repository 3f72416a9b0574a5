import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import SwiftProtobuf
import Testing

struct BadUpdate: Sendable, CustomStringConvertible {
  let field: String
  let paths: [String]
  let change: @Sendable (inout Rapport_Customer_V1_Customer) -> Void
  var description: String { field }
}

@Suite(.hangLimit) struct CustomerProfileTests {
  static let address = Rapport_Customer_V1_Address.with {
    $0.kind = .shipping
    $0.line1 = "1 Main Street"
    $0.city = "Berlin"
    $0.postalCode = "10115"
    $0.country = "DE"
  }

  @Test func updateChangesOnlyMaskedFieldsAndBumpsTheVersion() async throws {
    try await withCustomerService { customers, database, _ in
      let created = try await customers.createCustomer(.with {
        $0.email = "ada@example.com"
        $0.givenName = "Ada"
        $0.familyName = "Byron"
      }).customer
      let updated = try await customers.updateCustomer(.with {
        $0.customerID = created.id
        $0.expectedVersion = created.version
        $0.customer = .with {
          $0.familyName = "Lovelace"
          $0.givenName = "ignored: not in the mask"
          $0.addresses = [Self.address, .with {
            $0.kind = .billing
            $0.line1 = "2 Side Road"
            $0.country = "GB"
          }]
          $0.preferences.currency = "EUR"
          $0.tags = ["B2C", "vip"]
          $0.attributes = [
            "shoe_size": .with { $0.intValue = 38 },
            "lifetime.discount": .with { $0.moneyValue = .with { $0.amountMinor = 1500; $0.currency = "EUR" } },
            "newsletter": .with { $0.boolValue = true },
          ]
        }
        $0.updateMask = .with {
          $0.paths = ["family_name", "addresses", "preferences.currency", "tags", "attributes"]
        }
      }).customer
      #expect(updated.givenName == "Ada")
      #expect(updated.familyName == "Lovelace")
      #expect(updated.addresses.count == 2)
      #expect(updated.preferences.currency == "EUR")
      #expect(updated.tags == ["b2c", "vip"])
      #expect(updated.attributes["shoe_size"]?.intValue == 38)
      #expect(updated.attributes["lifetime.discount"]?.moneyValue.amountMinor == 1500)
      #expect(updated.version == created.version + 1)
      let read = try await customers.getCustomer(.with { $0.customerID = created.id }).customer
      #expect(read == updated)
      let events = try await eventTypes("customer", database)
      #expect(events == ["CustomerCreated", "CustomerUpdated"])
    }
  }

  @Test func aStaleVersionIsAbortedAndChangesNothing() async throws {
    try await withCustomerService { customers, _, _ in
      let created = try await customers.createCustomer(.with { $0.email = "ada@example.com" }).customer
      let request = Rapport_Customer_V1_UpdateCustomerRequest.with {
        $0.customerID = created.id
        $0.expectedVersion = created.version
        $0.customer.givenName = "Ada"
        $0.updateMask.paths = ["given_name"]
      }
      _ = try await customers.updateCustomer(request)
      await expectStatus(.aborted) {
        try await customers.updateCustomer(request.changed { $0.customer.givenName = "Augusta" })
      }
      let read = try await customers.getCustomer(.with { $0.customerID = created.id }).customer
      #expect(read.givenName == "Ada")
      #expect(read.version == 2)
    }
  }

  @Test func parallelUpdatesWithTheSameVersionLetExactlyOneWin() async throws {
    try await withCustomerService { customers, database, _ in
      let created = try await customers.createCustomer(.with { $0.email = "ada@example.com" }).customer
      let outcomes = try await withThrowingTaskGroup(of: RPCError.Code?.self) { group in
        for index in 0..<8 {
          group.addTask {
            do {
              _ = try await customers.updateCustomer(.with {
                $0.customerID = created.id
                $0.expectedVersion = created.version
                $0.customer.givenName = "Writer \(index)"
                $0.updateMask.paths = ["given_name"]
              })
              return nil
            } catch let error as RPCError {
              return error.code
            }
          }
        }
        return try await group.reduce(into: [RPCError.Code?]()) { $0.append($1) }
      }
      #expect(outcomes.filter { $0 == nil }.count == 1)
      #expect(outcomes.filter { $0 == .aborted }.count == 7)
      let updates = try await count("customer.outbox WHERE type = 'CustomerUpdated'", database)
      #expect(updates == 1)
    }
  }

  @Test(arguments: [
    BadUpdate(field: "update_mask", paths: []) { _ in },
    BadUpdate(field: "update_mask", paths: ["email"]) { _ in },
    BadUpdate(field: "customer.family_name", paths: ["family_name"]) { $0.familyName = String(repeating: "x", count: 201) },
    BadUpdate(field: "customer.addresses[0].country", paths: ["addresses"]) {
      $0.addresses = [CustomerProfileTests.address.changed { $0.country = "XX" }]
    },
    BadUpdate(field: "customer.addresses[0].line1", paths: ["addresses"]) {
      $0.addresses = [CustomerProfileTests.address.changed { $0.line1 = " " }]
    },
    BadUpdate(field: "customer.addresses[0].kind", paths: ["addresses"]) {
      $0.addresses = [CustomerProfileTests.address.changed { $0.kind = .unspecified }]
    },
    BadUpdate(field: "customer.addresses", paths: ["addresses"]) {
      $0.addresses = Array(repeating: CustomerProfileTests.address, count: 21)
    },
    BadUpdate(field: "customer.preferences.currency", paths: ["preferences.currency"]) { $0.preferences.currency = "eur" },
    BadUpdate(field: "customer.preferences.language", paths: ["preferences"]) { $0.preferences.language = "e" },
    BadUpdate(field: "customer.preferences.contact_channel", paths: ["preferences.contact_channel"]) {
      $0.preferences.contactChannel = .UNRECOGNIZED(77)
    },
    BadUpdate(field: "customer.tags", paths: ["tags"]) { $0.tags = (0...50).map { "t\($0)" } },
    BadUpdate(field: "customer.attributes", paths: ["attributes"]) { $0.attributes = ["bad key!": .with { $0.boolValue = true }] },
    BadUpdate(field: "customer.attributes.price.currency", paths: ["attributes"]) {
      $0.attributes = ["price": .with { $0.moneyValue.currency = "ZZZ" }]
    },
    BadUpdate(field: "customer.attributes.empty", paths: ["attributes"]) { $0.attributes = ["empty": .init()] },
  ])
  func invalidUpdatesNameTheFieldAndChangeNothing(_ bad: BadUpdate) async throws {
    try await withCustomerService { customers, database, _ in
      let created = try await customers.createCustomer(.with { $0.email = "ada@example.com" }).customer
      var customer = Rapport_Customer_V1_Customer()
      bad.change(&customer)
      let request = Rapport_Customer_V1_UpdateCustomerRequest.with { [customer] in
        $0.customerID = created.id
        $0.expectedVersion = created.version
        $0.customer = customer
        $0.updateMask.paths = bad.paths
      }
      await expectStatus(.invalidArgument, field: bad.field) { try await customers.updateCustomer(request) }
      let read = try await customers.getCustomer(.with { $0.customerID = created.id }).customer
      #expect(read == created)
      let events = try await count("customer.outbox", database)
      #expect(events == 1)
    }
  }

  @Test func updatesOfUnknownIdsAndMissingVersionsGetPreciseStatuses() async throws {
    try await withCustomerService { customers, _, _ in
      await expectStatus(.notFound) {
        try await customers.updateCustomer(.with {
          $0.customerID = UUID().uuidString
          $0.expectedVersion = 1
          $0.updateMask.paths = ["given_name"]
        })
      }
      await expectStatus(.invalidArgument, field: "expected_version") {
        try await customers.updateCustomer(.with {
          $0.customerID = UUID().uuidString
          $0.updateMask.paths = ["given_name"]
        })
      }
    }
  }
}
