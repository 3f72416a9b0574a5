import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import Testing

extension Executables {
  /// The suite under TLS as `rapport up --tls` runs it: mutual TLS between the services with one
  /// certificate each, per-caller allow-lists on every internal service, TLS on the gateway.
  @Suite struct TLSTests {
    @Test func internalServicesAnswerOnlyListedCallersWithCertificatesFromTheSuitesCA() async throws {
      try await withStack("tls", settings: ["gateway": ["partner-auth": "off"]], tls: true) { stack in
        let directory = try #require(stack.tlsDirectory)
        // A peer with a certificate from the suite's CA that no allow-list names, and one whose
        // certificate comes from another CA.
        try CertificateAuthority(directory: directory).writeIssued("stranger", to: directory)
        let foreign = NSTemporaryDirectory() + "rapport-foreign-ca-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: foreign) }
        try CertificateAuthority.suite(in: foreign)
        let foreignOperator = HTTP2ClientTransport.Posix.TransportSecurity.mTLS(
          certificateChain: [.file(path: "\(foreign)/operator.pem", format: .pem)],
          privateKey: .file(path: "\(foreign)/operator.key", format: .pem)
        ) { $0.trustRoots = .certificates([.file(path: "\(directory)/ca.pem", format: .pem)]) }

        // The operator works, and the gateway composes a full view over mutual TLS to the services.
        let customer = try await stack.withClients { clients in
          let customer = try await clients.customers.createCustomer(.with { $0.email = "tls@example.com" }).customer
          _ = try await clients.orders.placeOrder(.with {
            $0.idempotencyKey = "tls-1"
            $0.customerID = customer.id
            $0.channel = .web
            $0.currency = "EUR"
            $0.lines = [.with { $0.sku = "TEA"; $0.quantity = 1; $0.unitPriceMinor = 499 }]
          })
          _ = try await clients.support.openTicket(.with { $0.customerID = customer.id; $0.subject = "Hi"; $0.body = "Hello" })
          try await eventually(within: .seconds(10), "analytics consumed the order feed over mutual TLS") {
            try await clients.gateway.getCustomerView(.with { $0.customerID = customer.id }).view.metrics.orderCount == 1
          }
          let view = try await clients.gateway.getCustomerView(.with { $0.customerID = customer.id }).view
          #expect(view.sections.map(\.code) == [0, 0, 0, 0, 0, 0])
          // Analytics reads tags from the customer service over mutual TLS, as `analytics`.
          _ = try await clients.customers.updateCustomer(.with {
            $0.customerID = customer.id
            $0.expectedVersion = view.customer.version
            $0.customer = .with { $0.tags = ["tls"] }
            $0.updateMask = .with { $0.paths = ["tags"] }
          })
          try await withClient(stack.address("analytics"), security: Stack.clientSecurity(directory, as: "operator")) { client in
            let analytics = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client)
            _ = try await analytics.putSegment(.with { $0.id = "tls"; $0.rule = "tagged(tls)" })
            try await eventually(within: .seconds(10), "analytics read the customer's tags over mutual TLS") {
              try await analytics.listSegments(.init()).segments.first?.memberCount == 1
            }
          }
          return customer
        }

        let missing = UUID().uuidString
        // One call per internal RPC service and per event feed, with who may make it.
        let probes: [(name: String, service: String, allowed: Set<String>, call: @Sendable (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Void)] = [
          ("customer", "CustomerService", ["gateway", "order", "support", "operator"], { client in
            _ = try await Rapport_Customer_V1_CustomerService.Client(wrapping: client).findCustomer(.with { $0.email = "tls@example.com" })
          }),
          ("customer", "GetCustomer", ["gateway", "order", "support", "operator", "analytics"], { client in
            _ = try await Rapport_Customer_V1_CustomerService.Client(wrapping: client).getCustomer(.with { $0.customerID = customer.id })
          }),
          ("customer", "EraseCustomer", ["operator"], { client in
            _ = try await Rapport_Customer_V1_CustomerService.Client(wrapping: client).eraseCustomer(.with { $0.customerID = missing })
          }),
          ("order", "OrderService", ["gateway", "support", "operator"], { client in
            _ = try await Rapport_Order_V1_OrderService.Client(wrapping: client).listOrders(.with { $0.customerID = customer.id })
          }),
          ("order", "ImportOrders", ["operator"], { client in
            _ = try await Rapport_Order_V1_OrderService.Client(wrapping: client).importOrders { _ in }
          }),
          ("support", "SupportService", ["gateway", "operator"], { client in
            _ = try await Rapport_Support_V1_SupportService.Client(wrapping: client).listTickets(.with { $0.customerID = customer.id })
          }),
          ("analytics", "AnalyticsService", ["gateway", "operator"], { client in
            _ = try await Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client).getCustomerMetrics(.with { $0.customerID = customer.id })
          }),
          ("customer", "EventFeed", ["order", "support", "analytics"], Self.subscribe),
          ("order", "EventFeed", ["analytics", "support", "gateway"], Self.subscribe),
          ("support", "EventFeed", ["analytics"], Self.subscribe),
          ("analytics", "EventFeed", ["operator"], Self.subscribe),
        ]
        for probe in probes {
          for caller in ["customer", "order", "support", "analytics", "gateway", "operator", "stranger"] {
            let code = await Self.code(stack.address(probe.name), Stack.clientSecurity(directory, as: caller), probe.call)
            let expected: RPCError.Code? = probe.allowed.contains(caller) ? (probe.service == "EraseCustomer" ? .notFound : nil) : .permissionDenied
            #expect(code == expected, "\(caller) calling \(probe.name) \(probe.service)")
          }
        }
        for name in ["customer", "order", "support", "analytics"] {
          // No certificate, or one from another CA: no TLS session, so no RPC.
          #expect(await Self.code(stack.address(name), .plaintext, Self.health) == .unavailable, "plaintext to \(name)")
          #expect(await Self.code(stack.address(name), foreignOperator, Self.health) == .unavailable, "foreign CA to \(name)")
          // Health is open to every peer the handshake admitted (probes, load balancers).
          #expect(await Self.code(stack.address(name), Stack.clientSecurity(directory, as: "stranger"), Self.health) == nil)
        }
        // The gateway is the partner listener: TLS without client certificates, never plaintext.
        let serverOnly = HTTP2ClientTransport.Posix.TransportSecurity.tls { $0.trustRoots = .certificates([.file(path: "\(directory)/ca.pem", format: .pem)]) }
        #expect(await Self.code(stack.address("gateway"), serverOnly, Self.health) == nil)
        #expect(await Self.code(stack.address("gateway"), .plaintext, Self.health) == .unavailable)

        // Python grpcio over TLS: the gateway verified against the CA, the customer service with a client certificate.
        let partner = try await EndToEndTests.interop(stack, email: "tls@example.com")
        #expect(partner["found_id"] as? String == customer.id)
        #expect(partner["view_customer_id"] as? String == customer.id)
        #expect(partner["view_order_totals"] as? [Int] == [499])
      }
    }

    @Test func theGatewayServesARenewedCertificateAfterSIGHUP() async throws {
      let renewal = NSTemporaryDirectory() + "rapport-renewal-ca-\(UUID().uuidString)"
      defer { try? FileManager.default.removeItem(atPath: renewal) }
      // The renewal comes from a second CA, so a client can tell which certificate it was served.
      let second = try CertificateAuthority()
      try second.write(to: renewal)
      // The timed reload is an hour away: only SIGHUP can make the gateway notice.
      try await withStack(
        "tls-reload", settings: ["gateway": ["tls-reload-interval-ms": "3600000", "partner-auth": "off"]], tls: true) { stack in
        let directory = try #require(stack.tlsDirectory)
        @Sendable func trusting(_ folder: String) -> HTTP2ClientTransport.Posix.TransportSecurity {
          .tls { $0.trustRoots = .certificates([.file(path: "\(folder)/ca.pem", format: .pem)]) }
        }
        let gateway = stack.address("gateway")
        #expect(await Self.code(gateway, trusting(directory), Self.health) == nil)
        #expect(await Self.code(gateway, trusting(renewal), Self.health) == .unavailable)
        // Renewed on disk: nothing changes until the gateway is told.
        _ = try second.writeIssued("gateway", to: directory)
        #expect(await Self.code(gateway, trusting(renewal), Self.health) == .unavailable)
        stack.process("gateway").signal(SIGHUP)
        try await eventually(within: .seconds(5), "new connections get the renewed certificate") {
          await Self.code(gateway, trusting(renewal), Self.health) == nil
        }
        #expect(await Self.code(gateway, trusting(directory), Self.health) == .unavailable)
        #expect(stack.process("gateway").isRunning)
      }
    }

    /// The status a call ends with: nil for OK.
    static func code(
      _ address: HostPort, _ security: HTTP2ClientTransport.Posix.TransportSecurity,
      _ call: @Sendable (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Void
    ) async -> RPCError.Code? {
      do {
        try await withClient(address, security: security, timeout: .seconds(5)) { try await call($0) }
        return nil
      } catch let error as RPCError {
        return error.code
      } catch {
        return .unknown
      }
    }

    @Sendable static func health(_ client: GRPCClient<HTTP2ClientTransport.Posix>) async throws {
      _ = try await Grpc_Health_V1_Health.Client(wrapping: client).check(.init())
    }

    /// Subscribes from the start and takes what is there within half a second (an allowed caller's call
    /// then ends DEADLINE_EXCEEDED, which counts as admitted).
    @Sendable static func subscribe(_ client: GRPCClient<HTTP2ClientTransport.Posix>) async throws {
      var options = CallOptions.defaults
      options.timeout = .milliseconds(500)
      do {
        try await Rapport_Events_V1_EventFeed.Client(wrapping: client).subscribe(.with { $0.afterSequence = 0 }, options: options) {
          for try await _ in $0.messages {}
        }
      } catch let error as RPCError where error.code == .deadlineExceeded {}
    }
  }
}
