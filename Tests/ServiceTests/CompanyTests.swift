import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import Testing

@Suite(.hangLimit) struct CompanyTests {
  static let acme = Rapport_Customer_V1_Company.with {
    $0.legalName = "ACME Trading GmbH"
    $0.taxID = "de123456789"
    $0.tier = "Gold"
    $0.priceListCode = "B2B-EU"
    $0.paymentTermsNetDays = 30
    $0.creditLimit = .with {
      $0.amountMinor = 5_000_000
      $0.currency = "EUR"
    }
    $0.accountManager = "sam@rapport.example"
  }

  @Test func companiesAreCreatedReadUpdatedAndListed() async throws {
    try await withCustomerService { customers, database, _ in
      let created = try await customers.createCompany(.with { $0.company = Self.acme }).company
      #expect(created.taxID == "DE123456789")
      #expect(created.tier == "gold")
      #expect(created.creditLimit.amountMinor == 5_000_000)
      #expect(created.version == 1)
      let read = try await customers.getCompany(.with { $0.companyID = created.id }).company
      #expect(read == created)
      let updated = try await customers.updateCompany(.with {
        $0.companyID = created.id
        $0.expectedVersion = 1
        $0.company = .with {
          $0.paymentTermsNetDays = 60
          $0.legalName = "not in the mask"
        }
        $0.updateMask.paths = ["payment_terms_net_days"]
      }).company
      #expect(updated.paymentTermsNetDays == 60 && updated.legalName == "ACME Trading GmbH" && updated.version == 2)
      await expectStatus(.aborted) {
        try await customers.updateCompany(.with {
          $0.companyID = created.id
          $0.expectedVersion = 1
          $0.updateMask.paths = ["tier"]
        })
      }
      await expectStatus(.alreadyExists) {
        try await customers.createCompany(.with { $0.company = Self.acme.changed { $0.legalName = "Copycat" } })
      }
      for index in 0..<3 {
        _ = try await customers.createCompany(.with { $0.company.legalName = "Company \(index)" })
      }
      let page1 = try await customers.listCompanies(.with { $0.pageSize = 2 })
      let page2 = try await customers.listCompanies(.with {
        $0.pageSize = 2
        $0.pageToken = page1.nextPageToken
      })
      #expect((page1.companies + page2.companies).map(\.legalName) == ["ACME Trading GmbH", "Company 0", "Company 1", "Company 2"])
      #expect(page2.nextPageToken.isEmpty)
      let events = try await eventTypes("customer", database)
      #expect(events == ["CompanyCreated", "CompanyUpdated", "CompanyCreated", "CompanyCreated", "CompanyCreated"])
    }
  }

  @Test func contactsAreLinkedWithARoleListedAndUnlinked() async throws {
    try await withCustomerService { customers, _, _ in
      let acme = try await customers.createCompany(.with { $0.company = Self.acme }).company
      let buyer = try await customers.createCustomer(.with { $0.email = "buyer@acme.example" }).customer
      let payer = try await customers.createCustomer(.with { $0.email = "ap@acme.example" }).customer
      _ = try await customers.linkContact(.with {
        $0.companyID = acme.id
        $0.customerID = buyer.id
        $0.role = "buyer"
      })
      let link = try await customers.linkContact(.with {
        $0.companyID = acme.id
        $0.customerID = payer.id
        $0.role = "accounts payable"
      }).link
      #expect(link.role == "accounts payable")
      let contacts = try await customers.listCompanyContacts(.with { $0.companyID = acme.id }).contacts
      #expect(contacts.map(\.customer.email) == ["buyer@acme.example", "ap@acme.example"])
      #expect(contacts.map(\.link.role) == ["buyer", "accounts payable"])
      #expect(contacts.allSatisfy { $0.customer.kind == .companyContact })
      let byCompany = try await customers.searchCustomers(.with { $0.companyID = acme.id }).customers
      #expect(Set(byCompany.map(\.id)) == [buyer.id, payer.id])
      _ = try await customers.unlinkContact(.with {
        $0.companyID = acme.id
        $0.customerID = buyer.id
      })
      let person = try await customers.getCustomer(.with { $0.customerID = buyer.id }).customer
      #expect(person.kind == .person && person.companies.isEmpty)
      await expectStatus(.notFound) {
        try await customers.unlinkContact(.with {
          $0.companyID = acme.id
          $0.customerID = buyer.id
        })
      }
      await expectStatus(.notFound) {
        try await customers.linkContact(.with {
          $0.companyID = UUID().uuidString
          $0.customerID = buyer.id
        })
      }
    }
  }

  @Test func invalidCompaniesNameTheFieldAndStoreNothing() async throws {
    try await withCustomerService { customers, database, _ in
      let cases: [(String, Rapport_Customer_V1_Company)] = [
        ("company.legal_name", Self.acme.changed { $0.legalName = "  " }),
        ("company.tax_id", Self.acme.changed { $0.taxID = "DE 123" }),
        ("company.payment_terms_net_days", Self.acme.changed { $0.paymentTermsNetDays = 400 }),
        ("company.credit_limit.currency", Self.acme.changed { $0.creditLimit.currency = "EURO" }),
        ("company.credit_limit.amount_minor", Self.acme.changed { $0.creditLimit.amountMinor = -1 }),
        ("company.tier", Self.acme.changed { $0.tier = String(repeating: "t", count: 33) }),
      ]
      for (field, company) in cases {
        await expectStatus(.invalidArgument, field: field) { try await customers.createCompany(.with { $0.company = company }) }
      }
      let stored = try await count("customer.companies", database)
      #expect(stored == 0)
    }
  }
}
