import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import Synchronization
import Testing

#if canImport(FoundationNetworking)
  import FoundationNetworking
#endif

extension Executables {
  /// What operators rely on (issue 13): replacing one service under traffic, and a real Prometheus
  /// scraping the suite with Rapport's alerting rules loaded.
  @Suite struct OperationsTests {
    @Test func replacingTheOrderServiceUnderTrafficFailsNoCallAndLosesNoEvent() async throws {
      try await withStack("rolling") { stack in
        let others = stack.processes.filter { $0.name != "order" }.map { ($0.name, $0.process.pid) }
        let customer = try await stack.withClients { try await $0.customers.createCustomer(.with { $0.email = "steady@example.com" }).customer.id }
        // Two clients at once. The Python one (grpcio, steady_client.py) does only what gRPC's service
        // config says: waitForReady (a call waits for a connection instead of failing while no process
        // listens) and a retry policy for UNAVAILABLE with exponential backoff; no retry of its own.
        // The Swift one has the same policy, but grpc-swift-nio-transport 2.9.2 fails a call at once
        // with UNAVAILABLE in the moment the old connection has gone and no new one is up ("no subchannel
        // available", "subchannel isn't ready"), waitForReady or not, and its retry policy does not retry
        // that (the failure is in creating the stream, before any response). So the Swift client also
        // retries UNAVAILABLE itself, with gRPC's backoff (`retryingUnavailable`), as
        // docs/OPERATIONS.md advises Swift clients to.
        let signals = NSTemporaryDirectory() + "rapport-steady-\(UUID().uuidString)"
        let (ready, stop) = (signals + ".ready", signals + ".stop")
        // However the test ends, the Python client stops (it also gives up after 120 s by itself).
        defer { _ = FileManager.default.createFile(atPath: stop, contents: nil) }
        let python = Task { () -> (sent: Int, placed: Set<String>, failures: [String]) in
          let seen = try await runInterop("steady_client.py", ["\(stack.address("order"))", customer, ready, stop])
          return (seen["sent"] as? Int ?? -1, Set(seen["placed"] as? [String] ?? []), seen["failures"] as? [String] ?? ["no failures list"])
        }
        try await eventually(within: .seconds(60), "the Python client's first order was acknowledged") {
          FileManager.default.fileExists(atPath: ready)
        }
        let retry = RetryPolicy(
          maxAttempts: 5, initialBackoff: .milliseconds(500), maxBackoff: .seconds(4), backoffMultiplier: 2,
          retryableStatusCodes: [.unavailable])
        let traffic = Traffic()
        try await withClient(stack.address("order"), security: .plaintext, timeout: .seconds(30), retry: retry) { client in
          let orders = Rapport_Order_V1_OrderService.Client(wrapping: client)
          try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<2 {
              group.addTask {
                var n = 0
                while !traffic.stop.withLock({ $0 }) {
                  let key = "steady-\(worker)-\(n)"
                  n += 1
                  traffic.sent.withLock { $0 += 1 }
                  do {
                    let order = try await retryingUnavailable { try await orders.placeOrder(PartnerEndToEndTests.order(key, customer)).order }
                    traffic.placed.withLock { _ = $0.insert(order.id) }
                    _ = try await retryingUnavailable { try await orders.getOrder(.with { $0.orderID = order.id }) }
                  } catch {
                    traffic.failures.withLock { $0.append("\(key): \(error)") }
                  }
                  try await Task.sleep(for: .milliseconds(20))
                }
              }
            }
            try await Task.sleep(for: .seconds(2))
            // The replacement: SIGTERM the old process (it drains), then a new one on the same address.
            let began = ContinuousClock.now
            await stack.process("order").stop()
            try await stack.restart("order")
            print("order service replaced: no process listened for \(ContinuousClock.now - began)")
            try await Task.sleep(for: .seconds(2))
            traffic.stop.withLock { $0 = true }
            _ = FileManager.default.createFile(atPath: stop, contents: nil)
            try await group.waitForAll()
          }
        }
        #expect(traffic.failures.withLock { $0 } == [], "calls failed during the replacement")
        let swiftCount = traffic.placed.withLock { $0.count }
        #expect(swiftCount == traffic.sent.withLock { $0 } && swiftCount > 20)
        let seen = try await python.value
        let pythonPlaced = seen.placed
        #expect(
          seen.failures.isEmpty,
          "\(seen.failures.count) of the Python client's calls failed during the replacement, e.g. \(seen.failures.prefix(3))")
        #expect(pythonPlaced.count == seen.sent && pythonPlaced.count > 20, "\(seen.sent) sent, \(pythonPlaced.count) placed")
        print("order service replaced under traffic: Swift client \(swiftCount) orders, Python client \(pythonPlaced.count)")
        let count = swiftCount + pythonPlaced.count
        // Every acknowledged order's event reaches analytics exactly once.
        try await stack.withClients { clients in
          try await eventually(within: .seconds(20), "analytics counted every placed order") {
            try await clients.gateway.getCustomerView(.with { $0.customerID = customer }).view.metrics.orderCount == count
          }
        }
        // The other services were not touched.
        #expect(stack.processes.filter { $0.name != "order" }.map { ($0.name, $0.process.pid) }.elementsEqual(others) { $0 == $1 })
      }
    }

    @Test func eachServiceMigratesItsOwnSchemaAndExitsWhenAskedTo() async throws {
      let database = try await TestDatabase.create()
      let binaries = try Stack.binaryDirectory()
      for (name, schema) in [("customer", "customer"), ("order", "orders"), ("support", "support"), ("analytics", "analytics"), ("gateway", "gateway")] {
        for _ in 0..<2 {  // twice: the second run finds nothing to do
          let output = try await Shell.run(
            "/usr/bin/env", ["RAPPORT_\(name.uppercased())_DATABASE_URL=\(database.role(of: name).urlString)", "\(binaries)/rapport-\(name)", "migrate"])
          #expect(output.contains("rapport-\(name): migrations applied"), "\(output)")
        }
        #expect(try await TestDatabase.scalar("SELECT count(*)::int FROM \(schema).schema_migrations", on: database) > 0)
      }
      // Only the schemas' migrations ran: no service is listening, nothing else was created.
      #expect(try await TestDatabase.scalar("SELECT count(*)::int FROM orders.orders", on: database) == 0)
    }

    /// `rapport up` gives each service its share of the machine's cores as NIO event loops (at least 1),
    /// not one loop per core each.
    @Test func eachLaunchedServiceRunsItsShareOfEventLoops() async throws {
      try await withStack("loops") { stack in
        for entry in stack.processes {
          let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(entry.process.pid)/task")
          let loops = try tasks.filter { task in
            try String(contentsOfFile: "/proc/\(entry.process.pid)/task/\(task)/comm", encoding: .utf8).hasPrefix("NIO-SGLTN-")
          }
          let expected = ProcessInfo.processInfo.environment[Stack.eventLoopVariable].flatMap(Int.init) ?? Stack.eventLoopsPerService
          #expect(loops.count == expected, "\(entry.name) runs \(loops.count) event loops")
        }
      }
    }

    @Test func jsonLogsAreOneObjectPerLineAndCarryNoPersonalData() async throws {
      let settings = Dictionary(uniqueKeysWithValues: Stack.order.map { ($0, ["log-format": "json"]) })
      try await withStack("json-logs", settings: settings) { stack in
        let email = "private.person.\(UUID().uuidString.prefix(8))@example.com"
        try await stack.withClients { clients in
          let customer = try await clients.customers.createCustomer(.with { $0.email = email; $0.givenName = "Private" }).customer.id
          _ = try await clients.orders.placeOrder(PartnerEndToEndTests.order("json-1", customer))
          _ = try await clients.gateway.getCustomerView(.with { $0.email = email })
        }
        for entry in stack.processes {
          let log = try String(contentsOfFile: entry.process.logPath, encoding: .utf8)
          var objects = 0
          for line in log.split(separator: "\n") where !line.hasPrefix("rapport-\(entry.name) listening on") {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
            #expect(object?["service"] == entry.name && object?["level"] != nil && object?["time"] != nil, "\(entry.name): \(line)")
            objects += 1
          }
          #expect(objects > 0, "\(entry.name) logged nothing")
          #expect(!log.contains(email), "\(entry.name) logged the customer's email")
        }
      }
    }

    @Test func theOperationsGuideListsEveryOptionOfEveryExecutable() async throws {
      let root = repositoryRoot
      let guide = try String(contentsOf: root.appendingPathComponent("docs/OPERATIONS.md"), encoding: .utf8)
      // The options in the first column of the configuration reference.
      let rows = guide.split(separator: "\n").filter { $0.hasPrefix("| `") }
      let documented = Set(rows.flatMap { $0.split(separator: "|").first.map { $0.matches(of: /`(--[a-z-]+)`/).map { String($0.1) } } ?? [] })
      var offered = Set<String>()
      for name in Stack.order {
        let help = try await Shell.run("\(try Stack.binaryDirectory())/rapport-\(name)", ["--help"])
        offered.formUnion(help.matches(of: /(?m)^\s+(?:-[a-z], )?(--[a-z-]+)/).map { String($0.1) })
      }
      offered.remove("--help")
      #expect(offered.subtracting(documented).isEmpty, "options missing from docs/OPERATIONS.md: \(offered.subtracting(documented).sorted())")
      #expect(documented.subtracting(offered).isEmpty, "documented options no executable has: \(documented.subtracting(offered).sorted())")
    }

    @Test func restoringOneServicesSchemaLeavesTheOthersUntouched() async throws {
      try await withStack("restore") { stack in
        let (customer, order) = try await stack.withClients { clients in
          let customer = try await clients.customers.createCustomer(.with { $0.email = "restored@example.com" }).customer.id
          let order = try await clients.orders.placeOrder(PartnerEndToEndTests.order("restore-1", customer)).order.id
          _ = try await clients.support.openTicket(.with { $0.customerID = customer; $0.subject = "Hi"; $0.body = "Hello" })
          return (customer, order)
        }
        let url = stack.databaseURL
        func counts() async throws -> [Int] {
          [
            try await TestDatabase.scalar("SELECT count(*)::int FROM customer.customers", on: url),
            try await TestDatabase.scalar("SELECT count(*)::int FROM support.tickets", on: url),
          ]
        }
        let before = try await counts()
        let others = stack.processes.filter { $0.name != "order" }.map(\.process.pid)
        let dump = NSTemporaryDirectory() + "rapport-orders-\(UUID().uuidString).dump"
        defer { try? FileManager.default.removeItem(atPath: dump) }
        // The documented drill: dump the schema, lose it, restore it with the service stopped.
        try await Shell.run(try LocalPostgres.binary("pg_dump"), ["-Fc", "-n", "orders", "-f", dump, "--dbname=\(url.urlString)"])
        await stack.process("order").stop()
        try await Bootstrap.execute("DROP SCHEMA orders CASCADE", on: url, logger: testLogger("restore"))
        try await Shell.run(try LocalPostgres.binary("pg_restore"), ["--dbname=\(url.urlString)", dump])
        try await stack.restart("order")
        let (orderOwner, email) = try await stack.withClients { clients in
          (
            try await clients.orders.getOrder(.with { $0.orderID = order }).order.customerID,
            try await clients.customers.getCustomer(.with { $0.customerID = customer }).customer.email
          )
        }
        #expect(orderOwner == customer && email == "restored@example.com")
        #expect(try await counts() == before)
        #expect(stack.processes.filter { $0.name != "order" }.map(\.process.pid) == others)
      }
    }

    @Test func prometheusScrapesEveryServiceWithTheAlertingRulesLoaded() async throws {
      let prometheus = try Shell.which("prometheus")
      let root = repositoryRoot
      // Each service binds any free port for /metrics and announces it: a port only found free beforehand
      // can be taken by another test's socket before the service binds it.
      let settings = Dictionary(uniqueKeysWithValues: Stack.order.map { ($0, ["metrics-addr": "127.0.0.1:0"]) })
      try await withStack("scrape", settings: settings) { stack in
        var metricsAddresses: [String: HostPort] = [:]
        for name in Stack.order { metricsAddresses[name] = try await stack.process(name).metricsAddress() }
        let directory = NSTemporaryDirectory() + "rapport-prometheus-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let jobs = Stack.order.map { name in
          "- job_name: rapport-\(name)\n  static_configs: [{targets: [\"\(metricsAddresses[name]!)\"]}]"
        }
        try """
          global: {scrape_interval: 1s, evaluation_interval: 1s}
          rule_files: ["\(root.path)/deploy/prometheus/rapport-rules.yml"]
          scrape_configs:
          \(jobs.joined(separator: "\n"))
          """.write(toFile: "\(directory)/prometheus.yml", atomically: true, encoding: .utf8)
        // Prometheus cannot listen on a port of its own choosing and say which: a port found free may be
        // taken before it binds, so a Prometheus that exits is started again on another one.
        var started: (server: ChildProcess, web: Int)?
        for _ in 1...3 where started == nil {
          let web = try Shell.freePort()
          let server = try ChildProcess(
            name: "prometheus", executable: prometheus,
            arguments: [
              "--config.file=\(directory)/prometheus.yml", "--storage.tsdb.path=\(directory)/data",
              "--web.listen-address=127.0.0.1:\(web)",
            ],
            environment: [:], logPath: "\(directory)/prometheus.log")
          let deadline = ContinuousClock.now + .seconds(30)
          while server.isRunning && ContinuousClock.now < deadline && started == nil {
            let ready = try? await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(web)/-/ready")!)
            if (ready?.1 as? HTTPURLResponse)?.statusCode == 200 { started = (server, web) } else { try await Task.sleep(for: .milliseconds(200)) }
          }
          if started == nil { server.signal(SIGKILL) }
        }
        guard let (server, web) = started else { throw TestFailure("Prometheus did not start; see \(directory)/prometheus.log") }
        defer { server.signal(SIGKILL) }
        // Traffic, so that calls, feed lag and worker passes have samples.
        try await stack.withClients { clients in
          let customer = try await clients.customers.createCustomer(.with { $0.email = "scraped@example.com" }).customer.id
          _ = try await clients.orders.placeOrder(PartnerEndToEndTests.order("scraped-1", customer))
        }
        @Sendable func query(_ expression: String) async throws -> [[String: Any]] {
          var components = URLComponents(string: "http://127.0.0.1:\(web)/api/v1/query")!
          components.queryItems = [URLQueryItem(name: "query", value: expression)]
          let (data, _) = try await URLSession.shared.data(from: components.url!)
          let body = try JSONSerialization.jsonObject(with: data) as? [String: Any]
          return ((body?["data"] as? [String: Any])?["result"] as? [[String: Any]]) ?? []
        }
        try await eventually(within: .seconds(30), "Prometheus scraped all five services as up") {
          let up = (try? await query("up == 1")) ?? []
          return Set(up.compactMap { ($0["metric"] as? [String: String])?["job"] }) == Set(Stack.order.map { "rapport-\($0)" })
        }
        try await eventually(within: .seconds(30), "the services' own metrics arrived") {
          let calls = (try? await query("rpc_server_calls_total{job=\"rapport-order\",code=\"OK\"}")) ?? []
          let lag = (try? await query("rapport_feed_consumer_lag_seconds{job=\"rapport-analytics\"}")) ?? []
          let scans = (try? await query("rapport_worker_last_success_timestamp_seconds{job=\"rapport-support\",worker=\"support scan\"}")) ?? []
          return !calls.isEmpty && Set(lag.compactMap { ($0["metric"] as? [String: String])?["source"] }) == ["order", "support", "customer"]
            && !scans.isEmpty
        }
        // The backlog of each feed as operators compute it: the producer's head minus the consumer's cursor.
        try await eventually(within: .seconds(30), "outbox heads and cursors are exported") {
          let heads = (try? await query("rapport_outbox_head_sequence{job=\"rapport-order\"} > 0")) ?? []
          let cursors = (try? await query("rapport_feed_cursor_sequence{job=\"rapport-analytics\",source=\"order\"} > 0")) ?? []
          return !heads.isEmpty && !cursors.isEmpty
        }
        // Analytics' ranking model in memory: products and pairs held (a gauge every 5 s).
        try await eventually(within: .seconds(20), "the recommendation model's size is exported") {
          let products = (try? await query("rapport_analytics_recommendation_products{job=\"rapport-analytics\"}")) ?? []
          let pairs = (try? await query("rapport_analytics_recommendation_pairs{job=\"rapport-analytics\"}")) ?? []
          return products.count == 1 && pairs.count == 1
        }
        // Each service says what it is: rapport_build_info{service, version, commit}.
        let builds = try await query("rapport_build_info")
        #expect(Set(builds.compactMap { ($0["metric"] as? [String: String])?["service"] }) == Set(Stack.order))
        #expect(builds.allSatisfy { ($0["metric"] as? [String: String])?["version"] == RapportVersion.version })
        #expect(builds.allSatisfy { ($0["metric"] as? [String: String])?["commit"] == RapportVersion.commit })
        // Every service's pool, as PostgreSQL sees it: rapport_db_connections{state} (a gauge every 5 s).
        try await eventually(within: .seconds(20), "every service reports its pool") {
          let pools = (try? await query("rapport_db_connections{state=\"idle\"}")) ?? []
          return Set(pools.compactMap { ($0["metric"] as? [String: String])?["job"] }) == Set(Stack.order.map { "rapport-\($0)" })
        }
        // … and as the process counts its leases: requests waiting now, leases granted (both pools).
        let waiting = try await query("rapport_db_lease_requests_waiting")
        #expect(Set(waiting.compactMap { ($0["metric"] as? [String: String]).map { "\($0["job"] ?? "")/\($0["pool"] ?? "")" } })
          == Set(Stack.order.flatMap { ["rapport-\($0)/main", "rapport-\($0)/generic_plans"] }))
        #expect(try await !query("rapport_db_leases_total{job=\"rapport-order\",pool=\"main\"} > 0").isEmpty)
        let (data, _) = try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(web)/api/v1/rules")!)
        let groups = (((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["data"] as? [String: Any])?["groups"] as? [[String: Any]]) ?? []
        let rules = groups.flatMap { ($0["rules"] as? [[String: Any]]) ?? [] }
        #expect(Set(rules.compactMap { $0["name"] as? String }) == ["RapportServiceDown", "RapportErrorRatioHigh", "RapportConsumerLagging", "RapportSlaScannerStalled", "RapportDatabasePoolSaturated"])
        #expect(rules.allSatisfy { $0["health"] as? String == "ok" || $0["health"] as? String == "unknown" })
        // Nothing fires on a healthy suite.
        #expect(try await query("ALERTS{alertstate=\"firing\"}").isEmpty)
      }
    }
  }
}

/// What the steady client of the replacement test saw.
final class Traffic: Sendable {
  let placed = Mutex<Set<String>>([])
  let failures = Mutex<[String]>([])
  let sent = Mutex(0)
  let stop = Mutex(false)
}

/// Calls `body`, retrying UNAVAILABLE up to five more times with gRPC's jittered exponential backoff
/// (random in [0, 0.5 s), [0, 1 s), [0, 2 s), [0, 4 s), [0, 4 s)): safe for idempotent calls only.
func retryingUnavailable<Result: Sendable>(_ body: () async throws -> Result) async throws -> Result {
  var ceiling = 0.5
  for _ in 0..<5 {
    do {
      return try await body()
    } catch let error as RPCError where error.code == .unavailable {
      try await Task.sleep(for: .seconds(Double.random(in: 0..<ceiling)))
      ceiling = min(ceiling * 2, 4)
    }
  }
  return try await body()
}
