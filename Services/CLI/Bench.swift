#if canImport(Glibc)
  @preconcurrency import Glibc
#endif
import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Histogram
import Logging
import RapportCore
import RapportLocal
import RapportProtos

/// `rapport bench`: starts its own stack on a fresh embedded database, seeds it, drives GetCustomer,
/// FindCustomer, PlaceOrder and GetCustomerView over HTTP/2, then runs pgbench on the equivalent SQL in
/// the same run, and prints one Markdown table. Only responses with gRPC status OK count.
struct Bench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Measure RPC latency/throughput against pgbench.")

  @Option(help: "Concurrent requests in flight (one HTTP/2 connection per service).")
  var concurrency = 16

  @Option(help: "Seconds per measurement.")
  var duration = 10

  @Option(help: "Seconds each RPC row runs unmeasured first (connections, caches, autovacuum after seeding).")
  var warmup = 2

  @Option(help: "Customers to seed.")
  var customers = 2000

  @Option(help: "Scratch data folder (deleted first).")
  var dataDir = ".rapport/bench"

  @Option(help: "Also write the table to this file.")
  var out: String?

  @Option(help: "Requests per h2load row.")
  var h2loadRequests = 20000

  @Option(help: "Views asked with a 250 ms deadline while GetCustomer runs at full load.")
  var deadlineViews = 1000

  func run() async throws {
    try await Self.onScratchStack(dataDir: dataDir, out: out) { stack, _ in
      let rows = try await measure(stack)
      let memory = stack.processes.map { entry in
        "\(entry.name) \(Self.residentMB(entry.process.pid).map { String(format: "%.0f MB", $0) } ?? "?")"
      }
      return Self.table(rows, concurrency: concurrency, duration: duration, customers: customers)
        + "\n\n" + Self.ratios(rows) + "\n\nresident memory after the bench: " + memory.joined(separator: ", ")
    }
  }

  /// Starts the five release executables on a fresh embedded database under `dataDir` (deleted first),
  /// runs `body`, stops everything, prints the report `body` returns and writes it to `out` if given.
  static func onScratchStack(
    dataDir: String, out: String?, settings: [String: [String: String]] = [:], keep: Bool = false,
    _ body: (Stack, String) async throws -> String
  ) async throws {
    // Progress lines as they happen, also when the output goes to a file or a pipe (fully buffered there).
    setvbuf(stdout, nil, _IOLBF, 0)
    var logger = Logger(label: "rapport-bench")
    logger.logLevel = .warning
    let directory = URL(fileURLWithPath: dataDir).standardizedFileURL.path
    if !keep { try? FileManager.default.removeItem(atPath: directory) }
    let ports = Dictionary(uniqueKeysWithValues: Stack.order.map { ($0, 0) })
    let stack = try await Stack.start(
      dataDirectory: directory, databaseURL: nil, ports: ports,
      settings: metricsPorts.mapValues { ["metrics-addr": "127.0.0.1:\($0)"] }.merging(settings) { $0.merging($1) { $1 } },
      logger: logger, say: { _ in })
    do {
      let report = try await body(stack, directory)
      await stack.stop()
      print(report)
      if let out { try report.write(toFile: out, atomically: true, encoding: .utf8) }
    } catch {
      await stack.stop()
      throw error
    }
  }

  private func measure(_ stack: Stack) async throws -> [Row] {
    try await stack.withClients { clients in
      let customersAPI = clients.customers
      let ordersAPI = clients.orders
      let gateway = clients.gateway
      print("seeding \(customers) customers")
      let ids = try await seed(customersAPI, ordersAPI)
      let count = ids.count
      var rows: [Row] = []
      let services = stack.processes.map(\.process)
      rows.append(try await load("GetCustomer (Swift client)", services) { n in
        _ = try await customersAPI.getCustomer(.with { $0.customerID = ids[n % count] })
      })
      rows.append(try await load("FindCustomer", services) { n in
        _ = try await customersAPI.findCustomer(.with { $0.email = "bench-\(n % count)@example.com" })
      })
      rows.append(try await pgbench("pgbench: select by unique email (FindCustomer's SQL)", stack, Self.selectScript))
      // The C client, same shape for the echo, the read and the view, alternated: the ratios are the targets.
      let health = H2LoadTarget(
        name: "Health/Check (customer)", service: "customer", address: stack.address("customer"),
        path: "/grpc.health.v1.Health/Check", message: [])
      let read = H2LoadTarget(
        name: "GetCustomer", service: "customer", address: stack.address("customer"),
        path: "/rapport.customer.v1.CustomerService/GetCustomer",
        message: try Rapport_Customer_V1_GetCustomerRequest.with { $0.customerID = ids[0] }.serializedBytes())
      let viewTarget = H2LoadTarget(
        name: "GetCustomerView", service: "gateway", address: stack.address("gateway"),
        path: "/rapport.gateway.v1.PartnerGateway/GetCustomerView",
        message: try Rapport_Gateway_V1_GetCustomerViewRequest.with { $0.customerID = ids[0] }.serializedBytes())
      for target in [health, read, health, read] { rows.append(try await h2load(target, requests: h2loadRequests)) }
      rows.append(try await h2load(viewTarget, requests: max(h2loadRequests / 4, 1)))
      let run = UUID().uuidString.prefix(8)
      // Every write row starts from the same state: consumers caught up, tables vacuumed, checkpoint done.
      try await settle(stack)
      let place = try await load("PlaceOrder (2 lines, new key)", services) { n in
        _ = try await ordersAPI.placeOrder(Self.order(key: "bench-\(run)-\(n)", customer: ids[n % count]))
      }
      rows.append(place)
      try await Bootstrap.execute(Self.orderSetup, on: stack.databaseURL, logger: Logger(label: "bench"))
      try await settle(stack)
      let reference = try await pgbench("pgbench: PlaceOrder's statement (order, lines, history, outbox)", stack, Self.orderScript)
      rows.append(reference)
      // The target's reference: the service prepares its statement once per connection and runs it with
      // generic plans (`Pools.genericPlans`); pgbench does both too (`-M prepared`, the same session setting).
      try await settle(stack)
      rows.append(
        try await pgbench("pgbench: the same statement, prepared (-M prepared)", stack, Self.orderScript, prepared: true))
      let half = Double(place.ok) / place.seconds / 2
      try await settle(stack)
      let pacedReference = try await pgbench(
        "pgbench: the same statement paced at that rate", stack, Self.orderScript, rate: half)
      try await settle(stack)
      rows.append(try await load("PlaceOrder paced at half the rate above", services, rate: half) { n in
        _ = try await ordersAPI.placeOrder(Self.order(key: "paced-\(run)-\(n)", customer: ids[n % count]))
      })
      rows.append(pacedReference)
      try await settle(stack)
      let view = try await load("GetCustomerView (4 services)", services) { n in
        _ = try await gateway.getCustomerView(.with { $0.customerID = ids[n % min(count, 200)] })
      }
      rows.append(view)
      rows.append(try await load("GetCustomerView paced at half the rate above", services, rate: view.rate / 2) { n in
        _ = try await gateway.getCustomerView(.with { $0.customerID = ids[n % min(count, 200)] })
      })
      // The floor under the paced row: one view at a time, nothing else running.
      rows.append(try await load("GetCustomerView one at a time", services, inFlight: 1) { n in
        _ = try await gateway.getCustomerView(.with { $0.customerID = ids[n % min(count, 200)] })
      })
      rows.append(try await deadlineViews(gateway, ids: ids, background: { n in
        _ = try await customersAPI.getCustomer(.with { $0.customerID = ids[n % count] })
      }, services))
      return rows
    }
  }

  /// Creates the customers and one order each (so views have content and the order service has
  /// confirmed every customer once, as it would have in steady state).
  private func seed(
    _ customersAPI: Rapport_Customer_V1_CustomerService.Client<HTTP2ClientTransport.Posix>,
    _ ordersAPI: Rapport_Order_V1_OrderService.Client<HTTP2ClientTransport.Posix>
  ) async throws -> [String] {
    let total = customers
    return try await withThrowingTaskGroup(of: [(Int, String)].self) { group in
      for worker in 0..<8 {
        group.addTask {
          var made: [(Int, String)] = []
          for n in stride(from: worker, to: total, by: 8) {
            let id = try await customersAPI.createCustomer(.with { $0.email = "bench-\(n)@example.com" }).customer.id
            _ = try await ordersAPI.placeOrder(Self.order(key: "seed-\(n)", customer: id))
            made.append((n, id))
          }
          return made
        }
      }
      var all: [(Int, String)] = []
      for try await part in group { all += part }
      return all.sorted { $0.0 < $1.0 }.map(\.1)
    }
  }

  static func order(key: String, customer: String) -> Rapport_Order_V1_PlaceOrderRequest {
    .with {
      $0.idempotencyKey = key
      $0.customerID = customer
      $0.channel = .web
      $0.currency = "EUR"
      $0.lines = [
        .with { $0.sku = "TEA-EARL-250"; $0.title = "Earl Grey"; $0.quantity = 2; $0.unitPriceMinor = 1290 },
        .with { $0.sku = "MUG-STONE"; $0.title = "Mug"; $0.quantity = 1; $0.unitPriceMinor = 1850 },
      ]
    }
  }

  /// Runs `call` from `concurrency` tasks (`inFlight` when given) for `duration` seconds: back to back,
  /// or with `rate`, open-loop at that many calls per second in all, each latency counted from the call's
  /// scheduled start (so a call that had to wait for an earlier one counts its wait).
  func load(
    _ name: String, _ services: [ChildProcess], rate: Double? = nil, inFlight: Int? = nil,
    _ call: @escaping @Sendable (Int) async throws -> Void
  ) async throws -> Row {
    let concurrency = inFlight ?? self.concurrency
    print("measuring \(name)" + (rate.map { String(format: " at %.0f/s", $0) } ?? ""))
    if warmup > 0 {
      let warm = ContinuousClock.now + .seconds(warmup)
      try await withThrowingTaskGroup(of: Void.self) { group in
        for worker in 0..<concurrency {
          group.addTask {
            var n = 1_000_000_000 + worker
            while ContinuousClock.now < warm {
              try? await call(n)
              n += concurrency
            }
          }
        }
        try await group.waitForAll()
      }
    }
    let cpuBefore = (Self.ownCPU(), services.map { Self.processCPU($0.pid) })
    let start = ContinuousClock.now
    let end = start + .seconds(duration)
    let parts = try await withThrowingTaskGroup(of: (Histogram<UInt64>, Int).self) { group in
      for worker in 0..<concurrency {
        group.addTask {
          var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
          var errors = 0
          var n = worker
          while ContinuousClock.now < end {
            var began = ContinuousClock.now
            if let rate {
              let scheduled = start + .nanoseconds(Int64(Double(n) / rate * 1e9))
              if scheduled >= end { break }
              if scheduled > began { try await Task.sleep(until: scheduled) }
              began = scheduled
            }
            do {
              try await call(n)
              let elapsed = ContinuousClock.now - began
              _ = histogram.record(UInt64(elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000))
            } catch {
              errors += 1
            }
            n += concurrency
          }
          return (histogram, errors)
        }
      }
      var all: [(Histogram<UInt64>, Int)] = []
      for try await part in group { all.append(part) }
      return all
    }
    let wall = Self.seconds(ContinuousClock.now - start)
    var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
    for part in parts { histogram.add(part.0) }
    let serverCPU = zip(services.map { Self.processCPU($0.pid) }, cpuBefore.1).map { $0 - $1 }.reduce(0, +)
    return Row(
      name: name, ok: Int(histogram.totalCount), errors: parts.map(\.1).reduce(0, +), seconds: wall,
      p50: histogram.valueAtPercentile(50), p90: histogram.valueAtPercentile(90),
      p99: histogram.valueAtPercentile(99), max: histogram.max,
      benchCPU: (Self.ownCPU() - cpuBefore.0) / wall, serverCPU: serverCPU / wall)
  }

  /// Waits (up to 120 s) until analytics has applied every OrderPlaced the order service published, so a
  /// row measures the steady state rather than a consumer digesting the previous row's burst; prints the
  /// wait. Then vacuums the order tables and checkpoints, so the next row does not pay for the vacuum
  /// and dirty pages the previous rows' inserts left (whichever paced row ran first used to).
  private func settle(_ stack: Stack) async throws {
    try await catchUp(stack)
    let url = stack.databaseURL
    _ = try await Shell.run(
      try LocalPostgres.binary("psql"),
      [
        "-v", "ON_ERROR_STOP=1", "-qc",
        "VACUUM (ANALYZE) orders.orders, orders.order_lines, orders.status_history, orders.outbox, analytics.customer_metrics, analytics.customer_revenue",
        "-c", "CHECKPOINT", "-h", url.host, "-p", "\(url.port)", "-U", url.user, url.database,
      ])
  }

  private func catchUp(_ stack: Stack) async throws {
    let url = stack.databaseURL
    let started = ContinuousClock.now
    let sql = """
      SELECT (SELECT coalesce(max(sequence), 0) FROM orders.outbox WHERE type = 'OrderPlaced')
        - (SELECT coalesce(max(last_sequence), 0) FROM analytics.feed_cursors WHERE source = 'order')
      """
    while ContinuousClock.now - started < .seconds(120) {
      let behind = try await Shell.run(
        try LocalPostgres.binary("psql"),
        ["-tAc", sql, "-h", url.host, "-p", "\(url.port)", "-U", url.user, url.database])
      if Int(behind.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 1 <= 0 {
        print(String(format: "analytics caught up with the order feed after %.1f s", Self.seconds(ContinuousClock.now - started)))
        return
      }
      try await Task.sleep(for: .milliseconds(200))
    }
    print("analytics did not catch up with the order feed within 120 s")
  }

  /// Runs pgbench with `script` against the stack's database, as the superuser, same concurrency.
  /// With `prepared`, pgbench prepares the script's statements (`-M prepared`) and its sessions plan them
  /// once, as the service's generic-plan pool does (`plan_cache_mode = force_generic_plan`).
  /// With `rate`, pgbench paces transactions (`-R`) and logs each one (`-l`); the row then reports
  /// percentiles of time + schedule lag, the same open-loop latency the paced RPC row measures.
  private func pgbench(
    _ name: String, _ stack: Stack, _ script: String, rate: Double? = nil, prepared: Bool = false
  ) async throws -> Row {
    print("measuring \(name)" + (rate.map { String(format: " at %.0f/s", $0) } ?? ""))
    let scratch = NSTemporaryDirectory() + "rapport-bench-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let path = scratch + "/script.sql"
    try script.write(toFile: path, atomically: true, encoding: .utf8)
    let url = stack.databaseURL
    var arguments = [
      "-n", "-c", "\(concurrency)", "-j", "2", "-T", "\(duration)", "-D", "customers=\(customers)", "-r",
      "-h", url.host, "-p", "\(url.port)", "-U", url.user, "-f", path,
    ]
    if let rate { arguments += ["-R", String(format: "%.0f", rate), "-l", "--log-prefix=\(scratch)/tx"] }
    var program = try LocalPostgres.binary("pgbench")
    if prepared {
      arguments = [program] + arguments + ["-M", "prepared"]
      program = try Shell.which("env")
      arguments.insert("PGOPTIONS=-c plan_cache_mode=force_generic_plan", at: 0)
    }
    let output = try await Shell.run(program, arguments + [url.database])
    var histogram: Histogram<UInt64>?
    if rate != nil {
      var paced = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
      for file in try FileManager.default.contentsOfDirectory(atPath: scratch) where file.hasPrefix("tx") {
        // client transaction_no time(µs) script_no epoch epoch_µs schedule_lag(µs)
        for line in try String(contentsOfFile: "\(scratch)/\(file)", encoding: .utf8).split(separator: "\n") {
          let fields = line.split(separator: " ")
          guard fields.count >= 7, let time = UInt64(fields[2]), let lag = UInt64(fields[6]) else { continue }
          _ = paced.record(time + lag)
        }
      }
      histogram = paced
    }
    func number(after label: String) -> Double {
      guard let line = output.split(separator: "\n").first(where: { $0.contains(label) }),
        let value = line.split(separator: "=").last?.split(separator: " ").first
      else { return 0 }
      return Double(value) ?? 0
    }
    let tps = number(after: "tps =")
    let latency = number(after: "latency average")
    let failed = Int(number(after: "number of failed transactions"))
    return Row(
      name: name, ok: Int(tps * Double(duration)), errors: failed, seconds: Double(duration),
      p50: histogram?.valueAtPercentile(50), p90: histogram?.valueAtPercentile(90),
      p99: histogram?.valueAtPercentile(99), max: histogram?.max, benchCPU: nil, serverCPU: nil, averageMs: latency)
  }

  /// FindCustomer's statement (CustomerRows.select + the identity join) with literal values.
  static let selectScript = """
    \\set n random(0, :customers - 1)
    SELECT c.id, c.given_name, c.family_name, c.channel, c.state, c.merged_into, c.version, c.language, c.currency, c.contact_channel, c.tags, c.extras::text, c.created_at, c.updated_at, ci.kinds, ci.channels, ci.vals, cl.ids, cl.roles, cl.times FROM customer.customers c CROSS JOIN LATERAL (SELECT array_agg(i.kind ORDER BY i.added_at, i.kind, i.value) AS kinds, array_agg(i.channel ORDER BY i.added_at, i.kind, i.value) AS channels, array_agg(i.value ORDER BY i.added_at, i.kind, i.value) AS vals FROM customer.identities i WHERE i.customer_id = c.id) ci CROSS JOIN LATERAL (SELECT array_agg(l.company_id ORDER BY l.linked_at, l.company_id) AS ids, array_agg(l.role ORDER BY l.linked_at, l.company_id) AS roles, array_agg(l.linked_at ORDER BY l.linked_at, l.company_id) AS times FROM customer.company_contacts l WHERE l.customer_id = c.id) cl JOIN customer.identities x ON x.customer_id = c.id WHERE x.kind = 1 AND x.channel = 0 AND x.value = 'bench-' || :n || '@example.com';
    """

  /// The customer pgbench's orders belong to, known to the order service as ACTIVE.
  static let orderSetup = """
    INSERT INTO orders.customer_refs (customer_id, state, updated_at)
    VALUES ('00000000-0000-4000-8000-000000000001', 1, now()) ON CONFLICT DO NOTHING
    """

  /// PlaceOrder's single statement (OrderStore.place) with literal values: the same locks, rows, indexes
  /// and outbox append (a ~240-byte payload like a real OrderPlaced), one implicit transaction. Its
  /// events get a type no service consumes, so they cannot disturb the rows measured after it.
  static let orderScript = """
    \\set k random(1, 999999999999)
    WITH ref AS (SELECT customer_id FROM orders.customer_refs WHERE customer_id = '00000000-0000-4000-8000-000000000001' AND state = 1 FOR SHARE), cart AS (SELECT abandoned_at FROM orders.carts WHERE channel = 1 AND cart_id = '' AND order_id IS NULL FOR UPDATE), ok AS (SELECT 1 FROM ref WHERE '' = '' OR EXISTS (SELECT 1 FROM cart)), o AS (INSERT INTO orders.orders (id, customer_id, channel, idempotency_key, request_hash, status, currency, total_minor, created_at, updated_at, subtotal_minor, discount_minor, tax_minor, shipping_minor, channel_order_reference, shipping_address, billing_address, company_id, purchase_order_number, payment_terms_net_days, payment_due_at, cart_id, paid_minor, refunded_minor, carrier, tracking_number, shipped_at, delivered_at) SELECT gen_random_uuid(), '00000000-0000-4000-8000-000000000001', 1, 'pgb-' || :k, sha256('\\x01'::bytea), 1, 'EUR', 4430, now(), now(), 4430, 0, 0, 0, '', NULL, NULL, NULL, NULL, NULL, NULL, NULLIF('', ''), 0, 0, NULL, NULL, NULL, NULL FROM ok ON CONFLICT (channel, idempotency_key) DO NOTHING RETURNING id), l AS (INSERT INTO orders.order_lines (order_id, line_no, sku, title, quantity, unit_price_minor, discount_minor, tax_minor) SELECT o.id, l.n, l.sku, l.title, l.quantity, l.price, l.discount, l.tax FROM o, unnest(ARRAY['TEA-EARL-250','MUG-STONE'], ARRAY['Earl Grey','Mug'], ARRAY[2,1]::bigint[], ARRAY[1290,1850]::bigint[], ARRAY[0,0]::bigint[], ARRAY[0,0]::bigint[]) WITH ORDINALITY AS l(sku, title, quantity, price, discount, tax, n)), h AS (INSERT INTO orders.status_history (order_id, from_status, to_status, changed_at, actor, reason) SELECT o.id, 0, 1, now(), 'shop', 'placed' FROM o), c AS (UPDATE orders.carts SET order_id = o.id FROM o WHERE carts.channel = 1 AND carts.cart_id = '' RETURNING carts.abandoned_at IS NOT NULL AS recovered), lock AS (SELECT pg_advisory_xact_lock(42) FROM o), e AS (INSERT INTO orders.outbox (id, aggregate_type, aggregate_id, type, payload, occurred_at) SELECT gen_random_uuid(), 'order', o.id::text, 'PgbenchOrderPlaced', decode(repeat('0a', 240), 'hex'), now() FROM lock, o RETURNING pg_notify('orders_outbox_bench', '')) SELECT (SELECT count(*) FROM o), (SELECT count(*) FROM ref), (SELECT count(*) FROM cart), (SELECT count(*) FROM e);
    """

  struct Row {
    var name: String
    var ok: Int
    var errors: Int
    var seconds: Double
    var p50, p90, p99, max: UInt64?
    var benchCPU, serverCPU: Double?
    var averageMs: Double? = nil

    var rate: Double { Double(ok) / seconds }
  }

  /// The issue-11 targets as ratios of rows measured in this run (h2load rows: server-counted OKs).
  static func ratios(_ rows: [Row]) -> String {
    func rate(_ prefix: String) -> Double? {
      let matching = rows.filter { $0.name.hasPrefix(prefix) }
      guard !matching.isEmpty else { return nil }
      return matching.map(\.ok).reduce(0, +) > 0
        ? Double(matching.map(\.ok).reduce(0, +)) / matching.map(\.seconds).reduce(0, +) : 0
    }
    func ratio(_ label: String, _ numerator: String, _ denominator: String, target: Double) -> String {
      guard let top = rate(numerator), let bottom = rate(denominator), bottom > 0 else { return "- \(label): not measured" }
      let value = top / bottom
      // One decimal: a ratio just under its target must not print as the target.
      return String(format: "- %@: %.1f %% (target ≥ %.0f %%: %@)", label, value * 100, target * 100, value >= target ? "met" : "missed")
    }
    var lines = [
      ratio("GetCustomer / Health/Check, h2load", "GetCustomer (h2load", "Health/Check (customer) (h2load", target: 0.60),
      ratio("GetCustomerView / GetCustomer, h2load", "GetCustomerView (h2load", "GetCustomer (h2load", target: 0.12),
      ratio("GetCustomerView / GetCustomer, Swift client", "GetCustomerView (4 services)", "GetCustomer (Swift", target: 0.12),
      ratio("PlaceOrder / pgbench -M prepared", "PlaceOrder (2 lines", "pgbench: the same statement, prepared", target: 0.70),
    ]
    if let paced = rows.first(where: { $0.name.hasPrefix("PlaceOrder paced") }), let p99 = paced.p99 {
      lines.append(String(format: "- PlaceOrder p99 at half load: %.1f ms (target ≤ 20 ms: %@)", Double(p99) / 1000, p99 <= 20_000 ? "met" : "missed"))
    }
    if let paced = rows.first(where: { $0.name.hasPrefix("GetCustomerView paced") }), let p99 = paced.p99 {
      lines.append(String(format: "- GetCustomerView p99 at half load: %.1f ms (target ≤ 15 ms: %@)", Double(p99) / 1000, p99 <= 15_000 ? "met" : "missed"))
    }
    if let deadline = rows.first(where: { $0.name.hasPrefix("GetCustomerView, 250 ms") }) {
      let share = Double(deadline.ok) / Double(max(deadline.ok + deadline.errors, 1))
      lines.append(String(format: "- views answered within a 250 ms deadline under load: %d of %d = %.1f %% (target ≥ 99 %%: %@)", deadline.ok, deadline.ok + deadline.errors, share * 100, share >= 0.99 ? "met" : "missed"))
    }
    return lines.joined(separator: "\n")
  }

  static func table(_ rows: [Row], concurrency: Int, duration: Int, customers: Int) -> String {
    func ms(_ micros: UInt64?) -> String { micros.map { String(format: "%.2f", Double($0) / 1000) } ?? "—" }
    func percent(_ value: Double?) -> String { value.map { String(format: "%.0f %%", $0 * 100) } ?? "—" }
    var lines = [
      "| what | OK/s | errors | p50 ms | p90 ms | p99 ms | max ms | avg ms | bench CPU | services CPU |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows {
      let rate = String(format: "%.0f", Double(row.ok) / row.seconds)
      let average = row.averageMs.map { String(format: "%.2f", $0) } ?? "—"
      lines.append(
        "| \(row.name) | \(rate) | \(row.errors) | \(ms(row.p50)) | \(ms(row.p90)) | \(ms(row.p99)) | \(ms(row.max)) | \(average) | \(percent(row.benchCPU)) | \(percent(row.serverCPU)) |")
    }
    lines.append("")
    lines.append("concurrency \(concurrency), \(duration) s per row, \(customers) customers; CPU as a share of one core")
    return lines.joined(separator: "\n")
  }

  static func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
  }

  /// This process's user + system CPU seconds.
  static func ownCPU() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
      + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
  }

  /// Another process's user + system CPU seconds, from /proc.
  static func processCPU(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
  }
}
