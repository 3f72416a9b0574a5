import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import SwiftProtobuf
import Testing

@Suite(.hangLimit) struct CustomerMergeEraseTests {
  @Test func mergeMovesEverythingToTheSurvivorAndLeavesATombstone() async throws {
    try await withCustomerService { customers, database, _ in
      let survivor = try await customers.createCustomer(.with {
        $0.email = "ada@example.com"
        $0.givenName = "Ada"
      }).customer
      let duplicate = try await customers.resolveCustomer(.with {
        $0.identities = [email("a.lovelace@example.org"), external("pos-77", .store)]
        $0.hints.familyName = "Lovelace"
        $0.hints.tags = ["store"]
      }).customer
      let company = try await customers.createCompany(.with { $0.company.legalName = "Analytical Engines Ltd" }).company
      _ = try await customers.linkContact(.with {
        $0.companyID = company.id
        $0.customerID = duplicate.id
        $0.role = "buyer"
      })
      _ = try await customers.recordInteraction(.with {
        $0.interaction = .with {
          $0.customerID = duplicate.id
          $0.channel = .store
          $0.kind = .storeVisit
          $0.summary = "asked about engines"
        }
      })
      let older = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(-3600))
      for (id, granted, time) in [(survivor.id, true, older), (duplicate.id, false, Google_Protobuf_Timestamp(date: Date()))] {
        _ = try await customers.setConsent(.with {
          $0.customerID = id
          $0.decision = .with {
            $0.purpose = .marketingEmail
            $0.granted = granted
            $0.source = "test"
            $0.decideTime = time
          }
        })
      }

      let merged = try await customers.mergeCustomers(.with {
        $0.survivorID = survivor.id
        $0.duplicateID = duplicate.id
      }).survivor
      #expect(merged.id == survivor.id)
      #expect(merged.givenName == "Ada")
      #expect(merged.familyName == "Lovelace")
      #expect(merged.tags == ["store"])
      #expect(Set(merged.identities.map(\.value)) == ["ada@example.com", "a.lovelace@example.org", "pos-77"])
      #expect(merged.companies.map(\.companyID) == [company.id])
      #expect(merged.kind == .companyContact)

      // The tombstone resolves to the survivor and says so.
      let viaDuplicate = try await customers.getCustomer(.with { $0.customerID = duplicate.id })
      #expect(viaDuplicate.customer.id == survivor.id)
      #expect(viaDuplicate.mergedFrom == duplicate.id)
      let found = try await customers.findCustomer(.with { $0.email = "a.lovelace@example.org" }).customer
      #expect(found.id == survivor.id)
      let timeline = try await customers.listInteractions(.with { $0.customerID = survivor.id }).interactions
      #expect(timeline.map(\.summary) == ["asked about engines"])
      // Newest consent decision wins: the duplicate's later withdrawal.
      let consent = try await customers.getConsent(.with { $0.customerID = survivor.id })
      #expect(consent.current.map(\.granted) == [false])
      #expect(consent.history.count == 2)
      let export = try await customers.exportCustomer(.with { $0.customerID = survivor.id })
      #expect(export.mergedCustomerIds == [duplicate.id])

      let mergedEvents = try await TestDatabase.column(
        "SELECT aggregate_id FROM customer.outbox WHERE type = 'CustomerMerged'", on: database)
      #expect(mergedEvents == [survivor.id])
    }
  }

  @Test func mergingIntoItselfOrWithMergedOrErasedCustomersIsRefused() async throws {
    try await withCustomerService { customers, database, _ in
      let a = try await customers.createCustomer(.with { $0.email = "a@example.com" }).customer
      let b = try await customers.createCustomer(.with { $0.email = "b@example.com" }).customer
      let c = try await customers.createCustomer(.with { $0.email = "c@example.com" }).customer
      let d = try await customers.createCustomer(.with { $0.email = "d@example.com" }).customer
      await expectStatus(.invalidArgument, field: "duplicate_id") {
        try await customers.mergeCustomers(.with {
          $0.survivorID = a.id
          $0.duplicateID = a.id.uppercased()
        })
      }
      await expectStatus(.notFound) {
        try await customers.mergeCustomers(.with {
          $0.survivorID = a.id
          $0.duplicateID = UUID().uuidString
        })
      }
      _ = try await customers.mergeCustomers(.with {
        $0.survivorID = a.id
        $0.duplicateID = b.id
      })
      _ = try await customers.eraseCustomer(.with { $0.customerID = d.id })
      for (survivor, duplicate) in [(b.id, c.id), (c.id, b.id), (d.id, c.id), (c.id, d.id)] {
        await expectStatus(.failedPrecondition) {
          try await customers.mergeCustomers(.with {
            $0.survivorID = survivor
            $0.duplicateID = duplicate
          })
        }
      }
      let merges = try await count("customer.outbox WHERE type = 'CustomerMerged'", database)
      #expect(merges == 1)
      let live = try await count("customer.customers WHERE state = 1", database)
      #expect(live == 2)
    }
  }

  @Test func aMergeRacingAnUpdateOfTheDuplicateLeavesOneConsistentOutcome() async throws {
    try await withCustomerService { customers, database, _ in
      for round in 0..<5 {
        let survivor = try await customers.createCustomer(.with { $0.email = "s\(round)@example.com" }).customer
        let duplicate = try await customers.createCustomer(.with { $0.email = "d\(round)@example.com" }).customer
        async let merge = customers.mergeCustomers(.with {
          $0.survivorID = survivor.id
          $0.duplicateID = duplicate.id
        })
        async let update: Rapport_Customer_V1_UpdateCustomerResponse? = {
          do {
            return try await customers.updateCustomer(.with {
              $0.customerID = duplicate.id
              $0.expectedVersion = duplicate.version
              $0.customer.givenName = "Late"
              $0.updateMask.paths = ["given_name"]
            })
          } catch let error as RPCError where error.code == .failedPrecondition {
            return nil
          }
        }()
        let (merged, updated) = try await (merge, update)
        // Either the update landed first and the survivor inherited its name, or it was refused.
        #expect(merged.survivor.givenName == (updated == nil ? "" : "Late"))
        let tombstone = try await TestDatabase.column(
          "SELECT given_name FROM customer.customers WHERE id = '\(duplicate.id)' AND state = 2", on: database)
        #expect(tombstone == [""])
      }
    }
  }

  @Test func eraseRemovesPersonalDataOnceAndKeepsTheTombstone() async throws {
    try await withCustomerService { customers, database, _ in
      let ada = try await customers.resolveCustomer(.with {
        $0.identities = [email("ada@example.com"), phone("+4930123456")]
        $0.hints.givenName = "Ada"
        $0.hints.tags = ["vip"]
      }).customer
      _ = try await customers.recordInteraction(.with {
        $0.interaction = .with {
          $0.customerID = ada.id
          $0.channel = .phone
          $0.kind = .call
          $0.summary = "Ada called about her address in Berlin"
          $0.externalReference = "call-1"
        }
      })
      let erased = try await customers.eraseCustomer(.with {
        $0.customerID = ada.id
        $0.reason = "ticket 123"
      }).customer
      #expect(erased.state == .erased)
      #expect(erased.givenName.isEmpty && erased.email.isEmpty && erased.identities.isEmpty && erased.tags.isEmpty)
      let again = try await customers.eraseCustomer(.with { $0.customerID = ada.id }).customer
      #expect(again == erased)
      await expectStatus(.notFound) { try await customers.findCustomer(.with { $0.email = "ada@example.com" }) }
      let export = try await customers.exportCustomer(.with { $0.customerID = ada.id })
      #expect(export.interactions.map(\.summary) == [""])
      let leftovers = try await count(
        "customer.customers WHERE search_text <> '' OR given_name <> '' OR tags <> '{}'", database)
      #expect(leftovers == 0)
      let erasures = try await count("customer.outbox WHERE type = 'CustomerErased'", database)
      #expect(erasures == 1)
      // The identity is free again: a new customer may use it.
      let fresh = try await customers.resolveCustomer(.with { $0.identities = [email("ada@example.com")] })
      #expect(fresh.created && fresh.customer.id != ada.id)
      await expectStatus(.failedPrecondition) {
        try await customers.updateCustomer(.with {
          $0.customerID = ada.id
          $0.expectedVersion = erased.version
          $0.updateMask.paths = ["given_name"]
        })
      }
    }
  }

  @Test func importCreatesNewRowsReportsBadOnesAndIsIdempotent() async throws {
    try await withCustomerService { customers, database, _ in
      _ = try await customers.createCustomer(.with { $0.email = "known@example.com" })
      let rows: [Rapport_Customer_V1_ImportCustomersRequest] = [
        .with { $0.email = "a@example.com"; $0.givenName = "A"; $0.tags = ["import"] },
        .with { $0.email = "not an email" },
        .with { $0.email = "KNOWN@example.com" },
        .with { $0.phone = "+441234567890"; $0.channel = .store },
        .with { $0.externalID = "m-1" },
        .with { $0.email = "b@example.com"; $0.phone = "+441234567890" },
        .with { $0.externalID = "m-1"; $0.channel = .marketplace; $0.language = "fr" },
      ]
      let first = try await customers.importCustomers { writer in try await writer.write(contentsOf: rows) }
      #expect(first.rows == 7)
      #expect(first.created == 3)
      #expect(first.existing == 2)
      #expect(first.failed == 2)
      #expect(first.errors.map(\.rowNumber) == [2, 5])
      #expect(first.errors.map(\.field) == ["email", "channel"])
      let second = try await customers.importCustomers { writer in try await writer.write(contentsOf: rows) }
      #expect(second.created == 0 && second.existing == 5)
      let stored = try await count("customer.customers", database)
      #expect(stored == 4)
      let created = try await count("customer.outbox WHERE type = 'CustomerCreated'", database)
      #expect(created == 4)
      let imported = try await customers.searchCustomers(.with { $0.tag = "import" }).customers
      #expect(imported.map(\.email) == ["a@example.com"])
    }
  }
}
