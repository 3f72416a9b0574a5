import Foundation
import GRPCCore
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import Testing

extension Executables {
  /// OpenTelemetry tracing (issue 13) across the five executables, exported by OTLP/gRPC to a test
  /// collector built on the OTLP protos (Tests/EndToEndTests/interop/otlp_collector.py).
  @Suite struct TracingTests {
    /// One span as the collector wrote it.
    struct Span: Decodable, Hashable {
      let service: String, name: String, kind: Int, trace_id: String, span_id: String, parent_span_id: String
    }

    @Test func oneViewIsOneTraceAcrossTheGatewayAndTheFourServicesAndAnEventJoinsItsOrdersTrace() async throws {
      let root = repositoryRoot
      let directory = NSTemporaryDirectory() + "rapport-otlp-\(UUID().uuidString)"
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      defer { try? FileManager.default.removeItem(atPath: directory) }
      let spansPath = "\(directory)/spans.jsonl"
      let collector = try ChildProcess(
        name: "otlp-collector", executable: try Shell.which("python3"),
        arguments: [root.appendingPathComponent("Tests/EndToEndTests/interop/otlp_collector.py").path, spansPath],
        environment: [:], logPath: "\(directory)/collector.log")
      defer { collector.signal(SIGKILL) }
      let endpoint = "http://\(try await collector.address())"
      var settings = Dictionary(uniqueKeysWithValues: Stack.order.map { ($0, ["otlp-endpoint": endpoint]) })
      settings["gateway"]?["log-format"] = "json"

      try await withStack("tracing", settings: settings) { stack in
        let customer = try await stack.withClients { clients in
          let customer = try await clients.customers.createCustomer(.with { $0.email = "traced@example.com" }).customer.id
          _ = try await clients.orders.placeOrder(PartnerEndToEndTests.order("traced-1", customer))
          try await eventually(within: .seconds(10), "analytics counted the order") {
            try await clients.gateway.getCustomerView(.with { $0.customerID = customer }).view.metrics.orderCount == 1
          }
          return customer
        }
        @Sendable func spans() throws -> [Span] {
          guard let text = try? String(contentsOfFile: spansPath, encoding: .utf8) else { return [] }
          return try text.split(separator: "\n").map { try JSONDecoder().decode(Span.self, from: Data($0.utf8)) }
        }
        let view = "rapport.gateway.v1.PartnerGateway/GetCustomerView"
        // The view's batch calls (`ViewReads`); one view at a time leads each of its own batches.
        let upstream = [
          "rapport.customer.v1.CustomerService/BatchGetCustomers": "rapport-customer",
          "rapport.order.v1.OrderService/BatchGetCustomerOrderOverviews": "rapport-order",
          "rapport.support.v1.SupportService/BatchGetCustomerSupportOverviews": "rapport-support",
          "rapport.analytics.v1.AnalyticsService/BatchGetCustomerMetrics": "rapport-analytics",
        ]
        /// The spans of the first view whose trace holds a server span of each upstream call.
        @Sendable func completeViewTrace(_ all: [Span]) -> [Span]? {
          for server in all where server.name == view && server.service == "rapport-gateway" {
            let trace = all.filter { $0.trace_id == server.trace_id }
            let served = Set(trace.filter { $0.kind == 2 }.map { "\($0.name) \($0.service)" })
            if upstream.allSatisfy({ served.contains("\($0.key) \($0.value)") }) { return trace }
          }
          return nil
        }
        // The batch exporters send every few seconds; wait until a whole view's trace has arrived.
        do {
          try await eventually(within: .seconds(30), "one view's spans from all five services") {
            completeViewTrace(try spans()) != nil
          }
        } catch {
          print("spans received:\n" + (try spans()).map { "\($0)" }.joined(separator: "\n"))
          print("collector log:\n\(collector.logTail())")
          throw error
        }
        let viewTrace = try #require(completeViewTrace(try spans()))
        // Each service's server span is the child of the gateway's client span for that call, and each
        // client span the child of the gateway's server span: parent links, not just a shared trace id.
        let gatewayServer = try #require(viewTrace.first { $0.name == view && $0.kind == 2 })
        #expect(gatewayServer.parent_span_id.isEmpty || gatewayServer.parent_span_id == String(repeating: "0", count: 16))
        for (method, service) in upstream {
          let server = try #require(viewTrace.first { $0.name == method && $0.service == service && $0.kind == 2 })
          let client = try #require(viewTrace.first { $0.span_id == server.parent_span_id }, "\(method) has no parent")
          #expect(client.service == "rapport-gateway" && client.kind == 3 && client.name == method)
          #expect(client.parent_span_id == gatewayServer.span_id)
        }

        // The order's OrderPlaced event: analytics applies it in a consumer span of PlaceOrder's trace.
        try await eventually(within: .seconds(30), "analytics' consumer span joins the order's trace") {
          let all = try spans()
          guard let placed = all.first(where: { $0.name == "rapport.order.v1.OrderService/PlaceOrder" && $0.kind == 2 }) else {
            return false
          }
          return all.contains {
            $0.trace_id == placed.trace_id && $0.service == "rapport-analytics" && $0.name == "apply OrderPlaced"
              && $0.kind == 5
          }
        }

        // A log line written inside a traced request names its trace: with support stopped, the
        // gateway's JSON warning about the tickets section carries that view's trace_id.
        await stack.processes.first { $0.name == "support" }!.process.stop()
        _ = try await stack.withClients { try await $0.gateway.getCustomerView(.with { $0.customerID = customer }) }
        let gatewayLog = stack.processes.first { $0.name == "gateway" }!.process.logPath
        let warning = try String(contentsOfFile: gatewayLog, encoding: .utf8).split(separator: "\n")
          .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
          .first { $0["message"] as? String == "view section failed" && $0["section"] as? String == "tickets" }
        let traceID = try #require(warning?["trace_id"] as? String)
        try await eventually(within: .seconds(30), "the logged trace is the partial view's trace") {
          try spans().contains { $0.trace_id == traceID && $0.name == view && $0.service == "rapport-gateway" }
        }
      }
    }
  }
}
