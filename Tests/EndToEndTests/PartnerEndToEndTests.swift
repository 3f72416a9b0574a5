import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import Testing

extension Executables {
  /// Issue 12's whole partner boundary on the real executables: keys required, two partners bound to
  /// different companies with different scopes, every partner RPC over TLS from Swift, and the Python
  /// example of docs/PARTNERS.md run for both.
  @Suite struct PartnerEndToEndTests {
    @Test func twoBoundPartnersThroughEveryPartnerRPCOverTLSFromSwiftAndPython() async throws {
      let keyFile = NSTemporaryDirectory() + "rapport-first-admin-\(UUID().uuidString).key"
      defer { try? FileManager.default.removeItem(atPath: keyFile) }
      // No `partner-auth`: with TLS, keys are required by default.
      let settings = ["gateway": ["admin-key-file": keyFile]]
      try await withStack("partners", settings: settings, tls: true) { stack in
        @Sendable func readKey() -> String {
          (try? String(contentsOfFile: keyFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        }
        try await eventually(within: .seconds(10), "the gateway wrote the first admin key") { readKey().hasPrefix("rpk_") }
        let adminKey = readKey()
        try await stack.withClients { clients in
          let (customers, orders, support, gateway) = (clients.customers, clients.orders, clients.support, clients.gateway)
          // Two companies with one contact each; an order and a ticket for each contact.
          var rows: [String: (company: String, customer: String, order: String, ticket: String)] = [:]
          for name in ["acme", "globex"] {
            let company = try await customers.createCompany(.with { $0.company.legalName = name }).company.id
            let customer = try await customers.createCustomer(.with { $0.email = "buyer@\(name).example" }).customer.id
            _ = try await customers.linkContact(.with { $0.companyID = company; $0.customerID = customer })
            let order = try await orders.placeOrder(Self.order("\(name)-1", customer)).order.id
            let ticket = try await support.openTicket(.with { $0.customerID = customer; $0.subject = "Hi"; $0.body = "Hello" }).ticket.id
            rows[name] = (company, customer, order, ticket)
          }
          let (acme, globex) = (rows["acme"]!, rows["globex"]!)
          _ = try await customers.addIdentity(.with {
            $0.customerID = acme.customer
            $0.identity = .with { $0.kind = .phone; $0.value = "+49 30 1234567" }
          })

          // Partner 1 may read and write for Acme; partner 2 may only read for Globex.
          let reads = ["views:read", "customers:read", "orders:read", "tickets:read"]
          let writes = ["customers:write", "orders:write", "tickets:write"]
          let (shopKey, analystKey) = try await withClient(stack.address("gateway"), security: stack.clientSecurity) { raw in
            let admin = Rapport_Gateway_V1_PartnerAdmin.Client(wrapping: raw)
            let auth = Self.bearer(adminKey)
            func key(_ partner: String, _ scopes: [String], _ company: String) async throws -> String {
              let id = try await admin.createPartner(.with { $0.name = partner }, metadata: auth).partner.id
              return try await admin.createKey(.with {
                $0.partnerID = id
                $0.scopes = scopes
                $0.companyIds = [company]
              }, metadata: auth).secret
            }
            return (try await key("Acme shop", reads + writes, acme.company), try await key("Globex analyst", reads, globex.company))
          }
          let shop = Self.bearer(shopKey)
          let analyst = Self.bearer(analystKey)

          // Every partner RPC, through the shop's key, on its own rows.
          #expect(try await gateway.getCustomerView(.with { $0.customerID = acme.customer }, metadata: shop).view.customer.id == acme.customer)
          #expect(try await gateway.getCustomer(.with { $0.customerID = acme.customer }, metadata: shop).customer.id == acme.customer)
          #expect(try await gateway.findCustomer(.with { $0.email = "buyer@acme.example" }, metadata: shop).customer.id == acme.customer)
          #expect(try await gateway.findCustomer(.with { $0.identity = .with { $0.kind = .phone; $0.value = "+49301234567" } }, metadata: shop).customer.id == acme.customer)
          #expect(try await gateway.searchCustomers(.init(), metadata: shop).customers.map(\.id) == [acme.customer])
          #expect(try await gateway.getOrder(.with { $0.orderID = acme.order }, metadata: shop).order.id == acme.order)
          #expect(try await gateway.listOrders(.with { $0.customerID = acme.customer }, metadata: shop).orders.map(\.id) == [acme.order])
          #expect(try await gateway.getTicket(.with { $0.ticketID = acme.ticket }, metadata: shop).ticket.id == acme.ticket)
          #expect(try await gateway.listTickets(.with { $0.customerID = acme.customer }, metadata: shop).tickets.map(\.id) == [acme.ticket])
          let placed = try await gateway.placeOrder(Self.order("shop-1", acme.customer), metadata: shop)
          #expect(try await gateway.placeOrder(Self.order("shop-1", acme.customer), metadata: shop).order.id == placed.order.id)
          _ = try await gateway.recordPayment(.with {
            $0.orderID = placed.order.id
            $0.amount = placed.order.total
            $0.method = .card
            $0.provider = "stripe"
            $0.providerReference = "ch_shop_1"
          }, metadata: shop)
          _ = try await gateway.fulfillOrder(.with { $0.orderID = placed.order.id; $0.carrier = "DHL"; $0.trackingNumber = "1" }, metadata: shop)
          #expect(try await gateway.deliverOrder(.with { $0.orderID = placed.order.id }, metadata: shop).order.status == .delivered)
          let opened = try await gateway.openTicket(.with { $0.customerID = acme.customer; $0.subject = "Tea"; $0.body = "Late" }, metadata: shop).ticket
          _ = try await gateway.addMessage(.with {
            $0.ticketID = opened.id
            $0.authorKind = .customer
            $0.author = "customer"
            $0.body = "Still late"
          }, metadata: shop)
          // A bound key cannot create customers: they would be outside its binding.
          #expect(await Self.code { try await gateway.resolveCustomer(.with { $0.identities = [.with { $0.kind = .email; $0.value = "new@acme.example" }] }, metadata: shop) } == .permissionDenied)

          // Globex's rows through the shop's key, and Acme's through the analyst's: as if they did not exist.
          for (key, other) in [(shop, globex), (analyst, acme)] {
            #expect(await Self.code { try await gateway.getCustomerView(.with { $0.customerID = other.customer }, metadata: key) } == .notFound)
            #expect(await Self.code { try await gateway.getCustomer(.with { $0.customerID = other.customer }, metadata: key) } == .notFound)
            #expect(await Self.code { try await gateway.getOrder(.with { $0.orderID = other.order }, metadata: key) } == .notFound)
            #expect(await Self.code { try await gateway.getTicket(.with { $0.ticketID = other.ticket }, metadata: key) } == .notFound)
            #expect(try await gateway.listOrders(.with { $0.customerID = other.customer }, metadata: key).orders.isEmpty)
            #expect(try await gateway.listTickets(.with { $0.customerID = other.customer }, metadata: key).tickets.isEmpty)
            #expect(try await gateway.searchCustomers(.with { $0.companyID = other.company }, metadata: key).customers.isEmpty)
          }
          #expect(await Self.code { try await gateway.placeOrder(Self.order("shop-x", globex.customer), metadata: shop) } == .notFound)
          // The analyst reads its own rows and writes nothing.
          #expect(try await gateway.getOrder(.with { $0.orderID = globex.order }, metadata: analyst).order.id == globex.order)
          #expect(await Self.code { try await gateway.placeOrder(Self.order("analyst-1", globex.customer), metadata: analyst) } == .permissionDenied)
          #expect(await Self.code { try await gateway.openTicket(.with { $0.customerID = globex.customer; $0.subject = "x"; $0.body = "y" }, metadata: analyst) } == .permissionDenied)
          // No key, or a made-up one, over TLS: UNAUTHENTICATED.
          #expect(await Self.code { try await gateway.getCustomer(.with { $0.customerID = acme.customer }) } == .unauthenticated)
          #expect(await Self.code { try await gateway.getCustomer(.with { $0.customerID = acme.customer }, metadata: Self.bearer("rpk_x")) } == .unauthenticated)

          // The Python example of docs/PARTNERS.md, over TLS with only the .proto files, the CA and a key.
          let shopSeen = try await Self.pythonExample(stack, key: shopKey, email: "buyer@acme.example")
          #expect(shopSeen["find"] as? String == acme.customer)
          #expect((shopSeen["view_sections"] as? [String: Int])?.values.allSatisfy { $0 == 0 } == true)
          #expect((shopSeen["orders"] as? [String])?.contains(acme.order) == true)
          #expect(shopSeen["search"] as? [String] == [acme.customer])
          let shopPlaced = shopSeen["place"] as? [String]
          #expect(shopPlaced?.count == 2 && shopPlaced?[0] == shopPlaced?[1] && UUID(uuidString: shopPlaced?[0] ?? "") != nil)
          #expect(UUID(uuidString: shopSeen["ticket"] as? String ?? "") != nil)
          let analystSeen = try await Self.pythonExample(stack, key: analystKey, email: "buyer@globex.example")
          #expect(analystSeen["find"] as? String == globex.customer)
          #expect(analystSeen["orders"] as? [String] == [globex.order])
          #expect(analystSeen["place"] as? [String] == ["PERMISSION_DENIED", "PERMISSION_DENIED"])
          #expect(analystSeen["ticket"] as? String == "PERMISSION_DENIED")
          #expect(try await Self.pythonExample(stack, key: analystKey, email: "buyer@acme.example")["find"] as? String == "NOT_FOUND")

          // `rapport view` as an operator of the secure suite uses it: the CA folder and a key with views:read.
          let rapport = try Stack.binaryDirectory() + "/rapport"
          let view = ["view", "buyer@acme.example", "--gateway", "\(stack.address("gateway"))", "--tls-dir", try #require(stack.tlsDirectory)]
          #expect(try await Shell.run(rapport, view + ["--api-key", shopKey]).contains("id \(acme.customer)"))
          await #expect(throws: (any Error).self) { try await Shell.run(rapport, view) }
        }
      }
    }

    /// Tests/EndToEndTests/interop/partner_example.py (the example docs/PARTNERS.md shows) against the
    /// stack's gateway; the JSON it prints.
    static func pythonExample(_ stack: Stack, key: String, email: String) async throws -> [String: Any] {
      try await runInterop(
        "partner_example.py", ["\(stack.address("gateway"))", stack.tlsDirectory.map { "\($0)/ca.pem" } ?? "-", key, email])
    }

    static func bearer(_ key: String) -> Metadata {
      var metadata = Metadata()
      metadata.addString("Bearer \(key)", forKey: "authorization")
      return metadata
    }

    static func order(_ key: String, _ customer: String) -> Rapport_Order_V1_PlaceOrderRequest {
      .with {
        $0.idempotencyKey = key
        $0.customerID = customer
        $0.channel = .web
        $0.currency = "EUR"
        $0.lines = [.with { $0.sku = "TEA"; $0.title = "Tea"; $0.quantity = 2; $0.unitPriceMinor = 450 }]
      }
    }

    /// The status a call ends with: nil for OK.
    static func code<T>(_ call: () async throws -> T) async -> RPCError.Code? {
      do {
        _ = try await call()
        return nil
      } catch let error as RPCError {
        return error.code
      } catch {
        return .unknown
      }
    }
  }
}
