import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import SwiftProtobuf
import Testing

@Suite(.hangLimit) struct CustomerSearchTests {
  @Test func searchFiltersByFragmentTagChannelAndCreatedRange() async throws {
    try await withCustomerService { customers, _, _ in
      let lovelace = try await customers.resolveCustomer(.with {
        $0.identities = [email("ada@engines.example"), external("app-1", .mobile)]
        $0.hints.givenName = "Ada"
        $0.hints.familyName = "Lovelace"
        $0.hints.tags = ["vip"]
        $0.channel = .web
      }).customer
      let hopper = try await customers.resolveCustomer(.with {
        $0.identities = [email("grace@navy.example")]
        $0.hints.givenName = "Grace"
        $0.hints.familyName = "Hopper"
        $0.channel = .store
      }).customer
      let percent = try await customers.createCustomer(.with {
        $0.email = "percent@example.com"
        $0.familyName = "100% Love"
      }).customer
      func ids(_ request: Rapport_Customer_V1_SearchCustomersRequest) async throws -> [String] {
        try await customers.searchCustomers(request).customers.map(\.id)
      }
      let byName = try await ids(.with { $0.query = "LOVE" })
      #expect(byName == [percent.id, lovelace.id])
      let byEmail = try await ids(.with { $0.query = "navy.ex" })
      #expect(byEmail == [hopper.id])
      let literal = try await ids(.with { $0.query = "0% l" })
      #expect(literal == [percent.id])
      let byTag = try await ids(.with { $0.tag = "VIP" })
      #expect(byTag == [lovelace.id])
      let byAppChannel = try await ids(.with { $0.channel = .mobile })
      #expect(byAppChannel == [lovelace.id])
      let byFirstChannel = try await ids(.with { $0.channel = .store })
      #expect(byFirstChannel == [hopper.id])
      let since = try await ids(.with { $0.createdAfter = hopper.createTime })
      #expect(since == [percent.id, hopper.id])
      let before = try await ids(.with { $0.createdBefore = hopper.createTime })
      #expect(before == [lovelace.id])
      for (field, request) in [
        ("query", Rapport_Customer_V1_SearchCustomersRequest.with { $0.query = "ab" }),
        ("tag", .with { $0.tag = "bad tag" }),
        ("company_id", .with { $0.companyID = "acme" }),
        ("channel", .with { $0.channel = .UNRECOGNIZED(50) }),
        ("page_size", .with { $0.pageSize = 101 }),
        ("created_after", .with { $0.createdAfter = .with { $0.nanos = -1 } }),
      ] {
        await expectStatus(.invalidArgument, field: field) { try await customers.searchCustomers(request) }
      }
    }
  }

  @Test func pagesStayCorrectWhileCustomersAreInserted() async throws {
    try await withCustomerService { customers, _, _ in
      var expected: [String] = []
      for index in 0..<23 {
        expected.insert(try await customers.createCustomer(.with { $0.email = "p\(index)@example.com" }).customer.id, at: 0)
      }
      var seen: [String] = []
      var token = ""
      repeat {
        let page = try await customers.searchCustomers(.with {
          $0.pageSize = 5
          $0.pageToken = token
        })
        seen += page.customers.map(\.id)
        token = page.nextPageToken
        _ = try await customers.createCustomer(.with { $0.email = "late\(seen.count)@example.com" })
      } while !token.isEmpty
      #expect(seen == expected)
    }
  }
}
