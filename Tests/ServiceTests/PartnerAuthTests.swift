import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCProtobuf
@testable import GatewayService
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import SwiftProtobuf
import Testing

typealias AdminClient = Rapport_Gateway_V1_PartnerAdmin.Client<HTTP2ClientTransport.Posix>

/// A gateway with its own database and partner auth `mode`, upstreams that refuse connections (views
/// come back with failed sections: enough to see a call admitted), and the first admin key it wrote.
func withPartnerGateway(
  auth: GatewayApp.PartnerOptions.Auth = .required,
  _ body: @Sendable (GatewayClient, AdminClient, _ adminKey: String, DatabaseURL) async throws -> Void
) async throws {
  let database = try await TestDatabase.create()
  let refused = try SilentListener(listening: false)
  defer { refused.stop() }
  let nowhere = HostPort(host: "127.0.0.1", port: refused.port)
  let keyFile = NSTemporaryDirectory() + "rapport-admin-\(UUID().uuidString).key"
  defer { try? FileManager.default.removeItem(atPath: keyFile) }
  var config = testConfig("gateway", database)
  config.databaseURL = database.role(of: "gateway")
  let gateway = try GatewayApp.build(
    config: config, upstreams: .init(customer: nowhere, order: nowhere, support: nowhere, analytics: nowhere),
    viewTimeout: .milliseconds(500), partners: .init(auth: auth, adminKeyFile: keyFile, defaultRate: 1000, defaultBurst: 1000),
    logger: testLogger("gateway"))
  try await withRunningService(gateway) { address in
    try await eventually("the gateway wrote the first admin key") { FileManager.default.fileExists(atPath: keyFile) }
    let adminKey = try String(contentsOfFile: keyFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    try await withClient(to: address) { client in
      try await body(GatewayClient(wrapping: client), AdminClient(wrapping: client), adminKey, database)
    }
  }
}

/// The partner suites run one test at a time: each starts its own gateway (and some a whole stack) and
/// fires hundreds of parallel calls; all at once, they starved the rest of the suite on 2 cores.
@Suite(.serialized, .hangLimit) enum PartnerSuites {}

func bearer(_ key: String) -> Metadata { ["authorization": "Bearer \(key)"] }

extension GatewayClient {
  /// A view of any customer id with `metadata` (the upstreams refuse: sections fail, the call is OK).
  func view(_ metadata: Metadata) async throws -> Rapport_Gateway_V1_CustomerView {
    try await getCustomerView(.with { $0.customerID = UUID().uuidString.lowercased() }, metadata: metadata).view
  }
}

extension PartnerSuites {
  @Suite struct PartnerAuthTests {
    @Test func everyMissingOrBadKeyIsRefusedWithOneMessage() async throws {
      try await withPartnerGateway { gateway, admin, adminKey, _ in
        let unknown = KeySecretFormat.fake()
        let headers: [Metadata] = [
          [:], ["authorization": ""], ["authorization": "Bearer "], ["authorization": "Bearer garbled"],
          ["authorization": .string(adminKey)], ["authorization": "Basic \(adminKey)"], bearer(String(adminKey.dropLast())),
          bearer(adminKey + "0"), bearer("xpk_" + adminKey.dropFirst(4)), bearer(unknown), ["x-api-key": .string(adminKey)],
          bearer(adminKey.uppercased()),
        ]
        for metadata in headers {
          await expectStatus(.unauthenticated, mentioning: "missing or invalid API key") { try await gateway.view(metadata) }
          await expectStatus(.unauthenticated, mentioning: "missing or invalid API key") {
            try await admin.listPartners(.init(), metadata: metadata)
          }
        }
        // The right key passes; health needs none.
        _ = try await admin.listPartners(.init(), metadata: bearer(adminKey))
      }
    }

    @Test func scopesDecideWhichRPCsAKeyMayCall() async throws {
      try await withPartnerGateway { gateway, admin, adminKey, _ in
        let partner = try await admin.createPartner(
          .with { $0.name = "Acme" }, metadata: bearer(adminKey)).partner
        let viewer = try await admin.createKey(
          .with { $0.partnerID = partner.id; $0.scopes = ["views:read"] }, metadata: bearer(adminKey))
        #expect(viewer.secret.hasPrefix("rpk_") && viewer.secret.count > 64)
        #expect(viewer.key.scopes == ["views:read"] && viewer.key.partnerID == partner.id)
        let view = try await gateway.view(bearer(viewer.secret))
        #expect(view.sections.first?.code == Int32(RPCError.Code.unavailable.rawValue))
        let ordersOnly = try await admin.createKey(
          .with { $0.partnerID = partner.id; $0.scopes = ["orders:read"] }, metadata: bearer(adminKey))
        await expectStatus(.permissionDenied, mentioning: "views:read") { try await gateway.view(bearer(ordersOnly.secret)) }
        // Escalation: a partner key calling the operators' RPCs.
        await expectStatus(.permissionDenied, mentioning: "admin") {
          try await admin.createPartner(.with { $0.name = "Evil" }, metadata: bearer(viewer.secret))
        }
        await expectStatus(.invalidArgument, field: "scopes[0]") {
          try await admin.createKey(
            .with { $0.partnerID = partner.id; $0.scopes = ["root"] }, metadata: bearer(adminKey))
        }
        // Only hashes are stored.
        let keys = try await admin.listKeys(.with { $0.partnerID = partner.id }, metadata: bearer(adminKey))
        #expect(keys.keys.map(\.id) == [viewer.key.id, ordersOnly.key.id])
      }
    }

    @Test func revokedExpiredRotatedOutAndDisabledPartnersKeysStopWorkingWithinASecond() async throws {
      try await withPartnerGateway { gateway, admin, adminKey, database in
        let partner = try await admin.createPartner(
          .with { $0.name = "Acme" }, metadata: bearer(adminKey)).partner
        func key(expiring: Date? = nil) async throws -> Rapport_Gateway_V1_CreateKeyResponse {
          try await admin.createKey(.with {
            $0.partnerID = partner.id
            $0.scopes = ["views:read"]
            if let expiring { $0.expireTime = .init(date: expiring) }
          }, metadata: bearer(adminKey))
        }
        let revoked = try await key(), overlapping = try await key(), replaced = try await key()
        let expiring = try await key(expiring: Date().addingTimeInterval(8))  // slack for a loaded machine
        for created in [revoked, overlapping, replaced] { _ = try await gateway.view(bearer(created.secret)) }
        _ = try await admin.revokeKey(.with { $0.keyID = revoked.key.id }, metadata: bearer(adminKey))
        // A rotation with an hour of overlap: old and new both work.
        let rotation = try await admin.rotateKey(.with {
          $0.keyID = overlapping.key.id
          $0.oldKeyEndTime = .init(date: Date().addingTimeInterval(3600))
        }, metadata: bearer(adminKey))
        #expect(rotation.newKey.scopes == overlapping.key.scopes && rotation.newKey.id != overlapping.key.id)
        _ = try await gateway.view(bearer(overlapping.secret))
        _ = try await gateway.view(bearer(rotation.newSecret))
        // A rotation ending the old key now: only the new one works.
        let cutOver = try await admin.rotateKey(.with {
          $0.keyID = replaced.key.id
          $0.oldKeyEndTime = .init(date: Date())
        }, metadata: bearer(adminKey))
        _ = try await gateway.view(bearer(cutOver.newSecret))
        for (name, secret) in [("revoked", revoked.secret), ("rotated out", replaced.secret)] {
          try await eventually(within: .seconds(10), "the \(name) key is refused") {
            do { _ = try await gateway.view(bearer(secret)); return false } catch let error as RPCError {
              return error.code == .unauthenticated
            }
          }
        }
        try await eventually(within: .seconds(20), "the expired key is refused") {
          (try? await gateway.view(bearer(expiring.secret))) == nil
        }
        _ = try await gateway.view(bearer(rotation.newSecret))
        // Only the hash is stored: the new key's row holds sha256 of the key, and no row holds a key.
        let matching = try await TestDatabase.scalar(
          "SELECT count(*)::bigint FROM gateway.api_keys WHERE secret_hash = sha256(convert_to('\(rotation.newSecret)', 'UTF8'))",
          on: database)
        let clear = try await TestDatabase.scalar(
          "SELECT count(*)::bigint FROM gateway.api_keys WHERE position('rpk_' in encode(secret_hash, 'escape')) > 0", on: database)
        #expect(matching == 1 && clear == 0)
      }
    }

    @Test func theTokenBucketAdmitsExactlyItsBurstUnderParallelCallsAndKeysDoNotShareIt() async throws {
      try await withPartnerGateway { _, admin, adminKey, _ in
        let partner = try await admin.createPartner(
          .with { $0.name = "Flood" }, metadata: bearer(adminKey)).partner
        func limitedKey() async throws -> String {
          try await admin.createKey(.with {
            $0.partnerID = partner.id
            $0.scopes = ["admin"]
            $0.ratePerSecond = 1
            $0.burst = 50
          }, metadata: bearer(adminKey)).secret
        }
        let flooding = try await limitedKey(), other = try await limitedKey()
        let started = ContinuousClock.now
        let outcomes = await withTaskGroup(of: RPCError.Code?.self) { group in
          for _ in 0..<200 {
            group.addTask {
              do {
                _ = try await admin.listPartners(.init(), metadata: bearer(flooding))
                return nil
              } catch let error as RPCError { return error.code } catch { return .unknown }
            }
          }
          var all: [RPCError.Code?] = []
          for await outcome in group { all.append(outcome) }
          return all
        }
        // Exactly the burst, plus what refilled (1 a second) while the 200 calls arrived.
        let admitted = outcomes.filter { $0 == nil }.count
        let refilled = Int((ContinuousClock.now - started) / .seconds(1))
        #expect((50...50 + refilled).contains(admitted), "admitted \(admitted), refill allowance \(refilled)")
        #expect(outcomes.filter { $0 == .resourceExhausted }.count == 200 - admitted)
        // The key stays refused (a token refills only each second), with when to retry: of 20 more parallel
        // calls, at least one is refused however slow the machine.
        let refusal = await withTaskGroup(of: RPCError?.self) { group in
          for _ in 0..<20 {
            group.addTask {
              do { _ = try await admin.listPartners(.init(), metadata: bearer(flooding)); return nil } catch let error as RPCError {
                return error
              } catch { return nil }
            }
          }
          var first: RPCError?
          for await error in group where first == nil { first = error }
          return first
        }
        let error = try #require(refusal)
        #expect(error.code == .resourceExhausted)
        #expect(try #require(try error.unpackGoogleRPCStatus()).details.contains { $0.retryInfo != nil })
        _ = try await admin.listPartners(.init(), metadata: bearer(other))
      }
    }

    @Test func withPartnerAuthOffACallWithoutAKeyIsServedAndOneWithAKeyIsChecked() async throws {
      try await withPartnerGateway(auth: .off) { gateway, admin, adminKey, _ in
        _ = try await gateway.view([:])
        await expectStatus(.unauthenticated) { try await gateway.view(["authorization": "Bearer garbled"]) }
        await expectStatus(.unauthenticated) { try await admin.listPartners(.init(), metadata: [:]) }
        _ = try await admin.listPartners(.init(), metadata: bearer(adminKey))
      }
    }
  }
}

extension PartnerSuites {
  @Suite struct AuditLogTests {
    @Test func refusalsAndWritesAreAuditedWithKeyIdsAndNoSecrets() async throws {
      try await withPartnerGateway { gateway, admin, adminKey, _ in
        let partner = try await admin.createPartner(.with { $0.name = "Audited" }, metadata: bearer(adminKey)).partner
        let viewer = try await admin.createKey(
          .with { $0.partnerID = partner.id; $0.scopes = ["views:read"] }, metadata: bearer(adminKey))
        let unknown = KeySecretFormat.fake()
        await expectStatus(.unauthenticated) { try await gateway.view(bearer(unknown)) }
        await expectStatus(.unauthenticated) { try await gateway.view(["authorization": "Bearer garbled"]) }
        await expectStatus(.permissionDenied) {
          try await admin.listPartners(.init(), metadata: bearer(viewer.secret))
        }
        _ = try await gateway.view(bearer(viewer.secret))  // a read: not audited
        let adminID = try #require(KeySecretID.of(adminKey))
        // The log is written in batches: wait for all five entries (two refusals, one denial, two writes).
        try await eventually("the refusals, the denial and the writes were flushed") {
          let codes = try await admin.listAuditEntries(.init(), metadata: bearer(adminKey)).entries.map(\.code)
          return codes.filter { $0 == 16 }.count == 2 && codes.filter { $0 == 7 }.count == 1
            && codes.filter { $0 == 0 }.count == 2
        }
        let all = try await admin.listAuditEntries(.init(), metadata: bearer(adminKey)).entries
        let view = "rapport.gateway.v1.PartnerGateway/GetCustomerView"
        let unauthenticated = all.filter { $0.code == 16 }
        #expect(Set(unauthenticated.map(\.method)) == [view])
        #expect(Set(unauthenticated.map(\.keyID)) == [KeySecretID.of(unknown) ?? "?", ""])
        #expect(unauthenticated.allSatisfy { $0.partnerID.isEmpty && !$0.requestID.isEmpty })
        let denied = try #require(all.first { $0.code == 7 })
        #expect(denied.keyID == viewer.key.id && denied.partnerID == partner.id)
        #expect(denied.method == "rapport.gateway.v1.PartnerAdmin/ListPartners")
        let writes = all.filter { $0.code == 0 }.map(\.method)
        #expect(writes.sorted() == ["rapport.gateway.v1.PartnerAdmin/CreateKey", "rapport.gateway.v1.PartnerAdmin/CreatePartner"])
        #expect(all.filter { $0.code == 0 }.allSatisfy { $0.keyID == adminID })
        let filtered = try await admin.listAuditEntries(.with { $0.partnerID = partner.id }, metadata: bearer(adminKey)).entries
        #expect(filtered.map(\.code) == [7])
        let text = try all.map { try $0.jsonString() }.joined()
        #expect(!text.contains("rpk_"))
      }
    }
  }
}

/// The id part of a key, as the audit log shows it.
enum KeySecretID {
  static func of(_ key: String) -> String? {
    let parts = key.split(separator: "_")
    guard parts.count == 3, parts[1].count == 32 else { return nil }
    let h = Array(parts[1])
    return [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { String(h[$0]) }.joined(separator: "-")
  }
}

extension PartnerSuites {
  @Suite struct CompanyBindingTests {
    @Test func aBoundKeySeesOnlyItsCompaniesContactsAndEverythingElseAsIfItDidNotExist() async throws {
      try await withGateway(partners: .init(auth: .required)) { gateway, customers, _, _, operators in
        let (admin, adminKey) = try #require(operators)
        let acme = try await customers.createCompany(.with { $0.company.legalName = "Acme" }).company
        let globex = try await customers.createCompany(.with { $0.company.legalName = "Globex" }).company
        let ours = try await customers.createCustomer(.with { $0.email = "buyer@acme.example" }).customer
        let theirs = try await customers.createCustomer(.with { $0.email = "buyer@globex.example" }).customer
        let nobody = try await customers.createCustomer(.with { $0.email = "consumer@example.com" }).customer
        for (customer, company) in [(ours, acme), (theirs, globex)] {
          _ = try await customers.linkContact(.with {
            $0.companyID = company.id
            $0.customerID = customer.id
            $0.role = "buyer"
          })
        }
        let partner = try await admin.createPartner(.with { $0.name = "Acme's agency" }, metadata: bearer(adminKey)).partner
        let bound = try await admin.createKey(.with {
          $0.partnerID = partner.id
          $0.scopes = ["views:read"]
          $0.companyIds = [acme.id]
        }, metadata: bearer(adminKey)).secret
        let unbound = try await admin.createKey(.with {
          $0.partnerID = partner.id
          $0.scopes = ["views:read"]
        }, metadata: bearer(adminKey)).secret
        func view(_ request: Rapport_Gateway_V1_GetCustomerViewRequest, _ key: String) async throws -> Rapport_Gateway_V1_CustomerView {
          try await gateway.getCustomerView(request, metadata: bearer(key)).view
        }
        func byID(_ id: String) -> Rapport_Gateway_V1_GetCustomerViewRequest { .with { $0.customerID = id } }
        func byEmail(_ email: String) -> Rapport_Gateway_V1_GetCustomerViewRequest { .with { $0.email = email } }
        #expect(try await view(byID(ours.id), bound).customer.id == ours.id)
        #expect(try await view(byEmail("buyer@acme.example"), bound).customer.id == ours.id)
        // Outside the binding: exactly what a customer that does not exist gets.
        let missing = UUID().uuidString.lowercased()
        for id in [theirs.id, nobody.id] {
          await expectStatus(.notFound, mentioning: "customer '\(id)' not found") { try await view(byID(id), bound) }
        }
        await expectStatus(.notFound, mentioning: "customer '\(missing)' not found") { try await view(byID(missing), bound) }
        for email in ["buyer@globex.example", "consumer@example.com", "never@example.com"] {
          do {
            _ = try await view(byEmail(email), bound)
            Issue.record("\(email) was shown to a key bound to Acme")
          } catch let error as RPCError {
            #expect(error.code == .notFound && error.message == "no customer has this email")
          }
        }
        // An unbound key sees every customer.
        for customer in [ours, theirs, nobody] { #expect(try await view(byID(customer.id), unbound).customer.id == customer.id) }
      }
    }
  }
}

extension PartnerSuites {
  @Suite struct PartnerAttackTests {
    @Test func enumerationGetsNotFoundThenRateLimitedAndOversizedOrNestedRequestsChangeNothing() async throws {
      try await withGateway(partners: .init(auth: .required)) { gateway, customers, _, _, operators in
        let (admin, adminKey) = try #require(operators)
        let acme = try await customers.createCompany(.with { $0.company.legalName = "Acme" }).company
        let partner = try await admin.createPartner(.with { $0.name = "Prober" }, metadata: bearer(adminKey)).partner
        let key = bearer(try await admin.createKey(.with {
          $0.partnerID = partner.id
          $0.scopes = ["customers:read", "views:read"]
          $0.companyIds = [acme.id]
          $0.ratePerSecond = 5
          $0.burst = 100
        }, metadata: bearer(adminKey)).secret)
        // 1,000 sequential ids: each is NOT_FOUND (none is a contact of Acme) until the bucket is empty,
        // then RESOURCE_EXHAUSTED; nothing else, and nothing that tells the probe more.
        var codes: [String: Int] = [:]
        let started = ContinuousClock.now
        for n in 0..<1000 {
          let id = String(format: "00000000-0000-4000-8000-%012d", n)
          do {
            _ = try await gateway.getCustomer(.with { $0.customerID = id }, metadata: key)
            codes["OK", default: 0] += 1
          } catch let error as RPCError {
            codes["\(error.code)", default: 0] += 1
          }
        }
        let refilled = Int((ContinuousClock.now - started) / .seconds(1)) * 5 + 5
        let notFound = codes["\(RPCError.Code.notFound)", default: 0]
        #expect(Set(codes.keys) == ["\(RPCError.Code.notFound)", "\(RPCError.Code.resourceExhausted)"], "\(codes)")
        #expect((100...100 + refilled).contains(notFound), "\(codes)")
        // Oversized: refused before the handler; a deeply nested unknown field: kept as bytes, not parsed.
        let fresh = bearer(try await admin.createKey(.with {
          $0.partnerID = partner.id
          $0.scopes = ["customers:read", "views:read"]
          $0.companyIds = [acme.id]
        }, metadata: bearer(adminKey)).secret)
        await expectStatus(.resourceExhausted) {
          try await gateway.getCustomerView(.with { $0.email = String(repeating: "a", count: 5_000_000) }, metadata: fresh)
        }
        var nested: [UInt8] = []
        for _ in 0..<2000 {
          var length = nested.count
          var prefix: [UInt8] = [0x9A, 0x06]  // field 99, length-delimited
          repeat {
            prefix.append(UInt8(length & 0x7F) | (length > 0x7F ? 0x80 : 0))
            length >>= 7
          } while length > 0
          nested = prefix + nested
        }
        // A bound key's "nothing there" is held to the floor (50 ms by default), hidden or missing alike.
        for id in [UUID().uuidString, try await customers.createCustomer(.with { $0.email = "other@example.com" }).customer.id] {
          let began = ContinuousClock.now
          await expectStatus(.notFound) { try await gateway.getCustomer(.with { $0.customerID = id }, metadata: fresh) }
          #expect(ContinuousClock.now - began >= .milliseconds(50))
        }
        var deep = try Rapport_Customer_V1_GetCustomerRequest(serializedBytes: nested)
        deep.customerID = UUID().uuidString
        await expectStatus(.notFound) { try await gateway.getCustomer(deep, metadata: fresh) }
        let acmeContact = try await customers.createCustomer(.with { $0.email = "contact@acme.example" }).customer
        _ = try await customers.linkContact(.with { $0.companyID = acme.id; $0.customerID = acmeContact.id })
        #expect(try await gateway.getCustomer(.with { $0.customerID = acmeContact.id }, metadata: fresh).customer.id == acmeContact.id)
      }
    }
  }
}

extension PartnerSuites {
  @Suite struct PartnerReadTests {
    @Test func partnerReadsAreForwardedAndABoundKeySeesOnlyItsCompaniesRows() async throws {
      try await withGateway(partners: .init(auth: .required)) { gateway, customers, orders, support, operators in
        let (admin, adminKey) = try #require(operators)
        let acme = try await customers.createCompany(.with { $0.company.legalName = "Acme" }).company
        let ours = try await customers.createCustomer(.with { $0.email = "buyer@acme.example" }).customer
        let theirs = try await customers.createCustomer(.with { $0.email = "someone@example.com" }).customer
        _ = try await customers.linkContact(.with {
          $0.companyID = acme.id
          $0.customerID = ours.id
        })
        let ourOrder = try await orders.placeOrder(order("r1", customer: ours.id)).order
        let theirOrder = try await orders.placeOrder(order("r2", customer: theirs.id)).order
        let ourTicket = try await support.openTicket(ticket(ours.id)).ticket
        let theirTicket = try await support.openTicket(ticket(theirs.id)).ticket
        let partner = try await admin.createPartner(.with { $0.name = "Acme's agency" }, metadata: bearer(adminKey)).partner
        let reads = ["customers:read", "orders:read", "tickets:read"]
        let key = try await admin.createKey(.with {
          $0.partnerID = partner.id
          $0.scopes = reads
          $0.companyIds = [acme.id]
        }, metadata: bearer(adminKey)).secret
        let unbound = try await admin.createKey(.with { $0.partnerID = partner.id; $0.scopes = reads }, metadata: bearer(adminKey)).secret
        let auth = bearer(key)
        #expect(try await gateway.getCustomer(.with { $0.customerID = ours.id }, metadata: auth).customer.id == ours.id)
        #expect(try await gateway.findCustomer(.with { $0.email = "buyer@acme.example" }, metadata: auth).customer.id == ours.id)
        #expect(try await gateway.getOrder(.with { $0.orderID = ourOrder.id }, metadata: auth).order.id == ourOrder.id)
        #expect(try await gateway.getTicket(.with { $0.ticketID = ourTicket.id }, metadata: auth).ticket.id == ourTicket.id)
        #expect(try await gateway.listOrders(.with { $0.customerID = ours.id }, metadata: auth).orders.map(\.id) == [ourOrder.id])
        #expect(try await gateway.listTickets(.with { $0.customerID = ours.id }, metadata: auth).tickets.map(\.id) == [ourTicket.id])
        // Outside the binding: what a missing row gets.
        let missing = UUID().uuidString.lowercased()
        for id in [theirs.id, missing] {
          await expectStatus(.notFound, mentioning: "customer '\(id)' not found") {
            try await gateway.getCustomer(.with { $0.customerID = id }, metadata: auth)
          }
          #expect(try await gateway.listOrders(.with { $0.customerID = id }, metadata: auth).orders.isEmpty)
          #expect(try await gateway.listTickets(.with { $0.customerID = id }, metadata: auth).tickets.isEmpty)
        }
        for id in [theirOrder.id, missing] {
          await expectStatus(.notFound, mentioning: "order '\(id)' not found") { try await gateway.getOrder(.with { $0.orderID = id }, metadata: auth) }
        }
        for id in [theirTicket.id, missing] {
          await expectStatus(.notFound, mentioning: "ticket '\(id)' not found") { try await gateway.getTicket(.with { $0.ticketID = id }, metadata: auth) }
        }
        await expectStatus(.notFound, mentioning: "no customer has this email") {
          try await gateway.findCustomer(.with { $0.email = "someone@example.com" }, metadata: auth)
        }
        await expectStatus(.invalidArgument, field: "customer_id") { try await gateway.listOrders(.init(), metadata: auth) }
        // Page tokens and page sizes are the owning service's to judge, through the gateway too.
        await expectStatus(.invalidArgument, field: "page_token") {
          try await gateway.listOrders(.with { $0.customerID = ours.id; $0.pageToken = "not-a-token" }, metadata: auth)
        }
        await expectStatus(.invalidArgument, field: "page_token") {
          try await gateway.listTickets(.with { $0.customerID = ours.id; $0.pageToken = "OTIyMzM3MjAzNjg1NDc3NTgwN3x4" }, metadata: auth)
        }
        await expectStatus(.invalidArgument, field: "page_size") {
          try await gateway.searchCustomers(.with { $0.pageSize = 1000 }, metadata: auth)
        }
        // SearchCustomers and FindCustomer by identity: NUL, oversize, malformed tokens refused by field.
        await expectStatus(.invalidArgument, field: "page_token") {
          try await gateway.searchCustomers(.with { $0.pageToken = "OTIyMzM3MjAzNjg1NDc3NTgwN3x4" }, metadata: auth)
        }
        await expectStatus(.invalidArgument, field: "query") {
          try await gateway.searchCustomers(.with { $0.query = "ac\0me" }, metadata: auth)
        }
        await expectStatus(.invalidArgument, field: "query") {
          try await gateway.searchCustomers(.with { $0.query = String(repeating: "a", count: 200_000) }, metadata: auth)
        }
        await expectStatus(.invalidArgument, field: "identity.value") {
          try await gateway.findCustomer(.with { $0.identity = .with { $0.kind = .phone; $0.value = "+49\0301" } }, metadata: auth)
        }
        await expectStatus(.invalidArgument, field: "identity.kind") {
          try await gateway.findCustomer(.with { $0.identity = .with { $0.value = "x" } }, metadata: auth)
        }
        // By any identity: a phone number finds ours; theirs answers as a phone nobody has.
        _ = try await customers.addIdentity(.with {
          $0.customerID = ours.id
          $0.identity = .with { $0.kind = .phone; $0.value = "+49 30 1234567" }
        })
        _ = try await customers.addIdentity(.with {
          $0.customerID = theirs.id
          $0.identity = .with { $0.kind = .phone; $0.value = "+49 30 7654321" }
        })
        func byPhone(_ phone: String) -> Rapport_Customer_V1_FindCustomerRequest {
          .with { $0.identity = .with { $0.kind = .phone; $0.value = phone } }
        }
        #expect(try await gateway.findCustomer(byPhone("+49 30 1234567"), metadata: auth).customer.id == ours.id)
        for phone in ["+49 30 7654321", "+49 30 1111111"] {
          await expectStatus(.notFound, mentioning: "no customer has this identity") {
            try await gateway.findCustomer(byPhone(phone), metadata: auth)
          }
        }
        // Search: a key bound to one company searches its contacts; another company's are an empty page.
        let other = try await customers.createCompany(.with { $0.company.legalName = "Other" }).company
        _ = try await customers.linkContact(.with { $0.companyID = other.id; $0.customerID = theirs.id })
        #expect(try await gateway.searchCustomers(.init(), metadata: auth).customers.map(\.id) == [ours.id])
        #expect(try await gateway.searchCustomers(.with { $0.query = "example" }, metadata: auth).customers.map(\.id) == [ours.id])
        #expect(try await gateway.searchCustomers(.with { $0.companyID = other.id }, metadata: auth).customers.isEmpty)
        #expect(try await gateway.searchCustomers(.with { $0.companyID = UUID().uuidString }, metadata: auth).customers.isEmpty)
        await expectStatus(.invalidArgument, field: "company_id") {
          try await gateway.searchCustomers(.with { $0.companyID = "acme" }, metadata: auth)
        }
        #expect(Set(try await gateway.searchCustomers(.init(), metadata: bearer(unbound)).customers.map(\.id)) == [ours.id, theirs.id])
        // The owning service's errors pass through, field violations included.
        await expectStatus(.invalidArgument, field: "customer_id") {
          try await gateway.getCustomer(.with { $0.customerID = "me" }, metadata: auth)
        }
        // Unbound keys see everything their scopes allow; scopes still apply.
        #expect(try await gateway.getOrder(.with { $0.orderID = theirOrder.id }, metadata: bearer(unbound)).order.id == theirOrder.id)
        #expect(try await gateway.listOrders(.init(), metadata: bearer(unbound)).orders.count == 2)
        let viewsOnly = try await admin.createKey(.with { $0.partnerID = partner.id; $0.scopes = ["views:read"] }, metadata: bearer(adminKey)).secret
        await expectStatus(.permissionDenied, mentioning: "customers:read") {
          try await gateway.getCustomer(.with { $0.customerID = ours.id }, metadata: bearer(viewsOnly))
        }
      }
    }
  }
}

extension PartnerSuites {
  @Suite struct PartnerWriteTests {
    @Test func partnerWritesAreForwardedIdempotentAuditedAndHeldToTheBinding() async throws {
      try await withGateway(partners: .init(auth: .required)) { gateway, customers, orders, support, operators in
        let (admin, adminKey) = try #require(operators)
        let acme = try await customers.createCompany(.with { $0.company.legalName = "Acme" }).company
        let globex = try await customers.createCompany(.with { $0.company.legalName = "Globex" }).company
        let ours = try await customers.createCustomer(.with { $0.email = "buyer@acme.example" }).customer
        let theirs = try await customers.createCustomer(.with { $0.email = "someone@example.com" }).customer
        _ = try await customers.linkContact(.with {
          $0.companyID = acme.id
          $0.customerID = ours.id
        })
        let theirOrder = try await orders.placeOrder(order("w0", customer: theirs.id)).order
        let theirTicket = try await support.openTicket(ticket(theirs.id)).ticket
        let partner = try await admin.createPartner(.with { $0.name = "Acme's shop" }, metadata: bearer(adminKey)).partner
        let writes = ["customers:write", "orders:write", "tickets:write"]
        let bound = bearer(try await admin.createKey(.with {
          $0.partnerID = partner.id
          $0.scopes = writes
          $0.companyIds = [acme.id]
        }, metadata: bearer(adminKey)).secret)
        let unbound = bearer(try await admin.createKey(.with { $0.partnerID = partner.id; $0.scopes = writes }, metadata: bearer(adminKey)).secret)
        // Forwarded and idempotent: a retry with the same key returns the first order.
        let placed = try await gateway.placeOrder(order("w1", customer: ours.id), metadata: bound).order
        let retried = try await gateway.placeOrder(order("w1", customer: ours.id), metadata: bound)
        #expect(retried.order.id == placed.id && retried.replayed)
        _ = try await gateway.recordPayment(payment(placed.id, placed.total.amountMinor, reference: "w-pay"), metadata: bound)
        _ = try await gateway.fulfillOrder(.with { $0.orderID = placed.id; $0.carrier = "DHL"; $0.trackingNumber = "1" }, metadata: bound)
        _ = try await gateway.deliverOrder(.with { $0.orderID = placed.id }, metadata: bound)
        let opened = try await gateway.openTicket(ticket(ours.id), metadata: bound).ticket
        _ = try await gateway.addMessage(reply(opened.id, .customer, "Thanks"), metadata: bound)
        // Outside the binding: as if it did not exist.
        await expectStatus(.notFound, mentioning: "customer '\(theirs.id)' not found") {
          try await gateway.placeOrder(order("w2", customer: theirs.id), metadata: bound)
        }
        await expectStatus(.notFound, mentioning: "order '\(theirOrder.id)' not found") {
          try await gateway.recordPayment(payment(theirOrder.id, 100, reference: "w-pay-2"), metadata: bound)
        }
        await expectStatus(.notFound, mentioning: "order '\(theirOrder.id)' not found") {
          try await gateway.deliverOrder(.with { $0.orderID = theirOrder.id }, metadata: bound)
        }
        await expectStatus(.notFound, mentioning: "customer '\(theirs.id)' not found") {
          try await gateway.openTicket(ticket(theirs.id), metadata: bound)
        }
        await expectStatus(.notFound, mentioning: "ticket '\(theirTicket.id)' not found") {
          try await gateway.addMessage(reply(theirTicket.id, .agent, "Hi"), metadata: bound)
        }
        var b2b = order("w3", customer: ours.id)
        b2b.b2B = .with { $0.companyID = globex.id; $0.paymentTermsNetDays = 30 }
        await expectStatus(.invalidArgument, field: "b2b.company_id") { try await gateway.placeOrder(b2b, metadata: bound) }
        let resolve = Rapport_Customer_V1_ResolveCustomerRequest.with {
          $0.identities = [.with { $0.kind = .email; $0.value = "new@acme.example" }]
          $0.channel = .web
        }
        await expectStatus(.permissionDenied) { try await gateway.resolveCustomer(resolve, metadata: bound) }
        #expect(try await gateway.resolveCustomer(resolve, metadata: unbound).created)
        // Nothing outside the binding changed.
        #expect(try await orders.getOrder(.with { $0.orderID = theirOrder.id }).order.status == theirOrder.status)
        #expect(try await support.getTicket(.with { $0.ticketID = theirTicket.id }).ticket.messages.count == theirTicket.messages.count)
        // Every write is in the audit log before its response; refusals are flushed shortly after.
        let audited = try await admin.listAuditEntries(.with { $0.partnerID = partner.id; $0.code = 0 }, metadata: bearer(adminKey))
          .entries.map(\.method)
        for method in ["PlaceOrder", "RecordPayment", "FulfillOrder", "DeliverOrder", "OpenTicket", "AddMessage", "ResolveCustomer"] {
          #expect(audited.contains("rapport.gateway.v1.PartnerGateway/\(method)"), "\(method) not audited")
        }
        let placedEntries = try await admin.listAuditEntries(.with {
          $0.partnerID = partner.id
          $0.method = "rapport.gateway.v1.PartnerGateway/PlaceOrder"
          $0.code = 0
        }, metadata: bearer(adminKey)).entries
        #expect(placedEntries.allSatisfy { $0.targetIds == ["customer:\(ours.id)", "order:\(placed.id)"] } && placedEntries.count == 2)
        let refusedPayment = try await admin.listAuditEntries(.with {
          $0.method = "rapport.gateway.v1.PartnerGateway/RecordPayment"
          $0.code = 5
        }, metadata: bearer(adminKey)).entries
        #expect(refusedPayment.map(\.targetIds) == [["order:\(theirOrder.id)"]])
      }
    }
  }
}

/// A well-formed key that no gateway issued.
enum KeySecretFormat {
  static func fake() -> String {
    "rpk_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "") + "_" + String(repeating: "ab", count: 32)
  }
}

@Suite(.hangLimit) struct RateLimiterTests {
  @Test func twoHundredParallelTakesAgainstABurstOfFiftyAdmitExactlyFifty() async {
    let limiter = RateLimiter()
    let key = KeyRecord(
      id: UUID(), partnerID: UUID(), secretHash: [], scopes: [], companyIDs: [], ratePerSecond: 1, burst: 50,
      expiresAt: nil, revokedAt: nil, createdAt: Date(), lastUsedAt: nil)
    let now = ContinuousClock.now  // one instant: no refill, so the count is exact
    let admitted = await withTaskGroup(of: Bool.self) { group in
      for _ in 0..<200 { group.addTask { limiter.take(key, at: now) == nil } }
      var count = 0
      for await ok in group where ok { count += 1 }
      return count
    }
    #expect(admitted == 50)
    let wait = limiter.take(key, at: now)
    #expect(wait == .milliseconds(1000))
    #expect(limiter.take(key, at: now + .seconds(1)) == nil)  // one token back after a second at 1/s
    let other = KeyRecord(
      id: UUID(), partnerID: UUID(), secretHash: [], scopes: [], companyIDs: [], ratePerSecond: 1, burst: 2,
      expiresAt: nil, revokedAt: nil, createdAt: Date(), lastUsedAt: nil)
    #expect(limiter.take(other, at: now) == nil)  // another key's bucket is its own
  }
}
