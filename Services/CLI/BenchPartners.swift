import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportCore
import RapportLocal
import RapportProtos

/// `rapport bench-partners`: what the partner boundary costs and whether it leaks. On its own stack
/// (partner auth off, so a call without a key skips the checks and a call with one gets all of them),
/// it measures the view without a key and through a bound key, alternated, and then probes a bound key
/// with 1,000 ids of rows it may not see and 1,000 ids of rows that do not exist, interleaved one at a
/// time (one of each per pair, in random order), comparing the two latency distributions.
struct BenchPartners: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-partners", abstract: "Measure the cost of partner checks and the timing of hidden rows.")

  @Option(help: "Concurrent requests in flight for the view rows.")
  var concurrency = 16

  @Option(help: "Seconds per view row.")
  var duration = 10

  @Option(help: "Probes per kind (hidden, missing) and RPC.")
  var probes = 1000

  @Option(help: "Customers to seed (half of them contacts of the key's company).")
  var customers = 200

  @Option(help: "Scratch data folder (deleted first).")
  var dataDir = ".rapport/bench-partners"

  @Option(help: "Also write the report to this file.")
  var out: String?

  func run() async throws {
    let keyFile = "\(URL(fileURLWithPath: dataDir).standardizedFileURL.path)-admin.key"
    try? FileManager.default.removeItem(atPath: keyFile)
    try await Bench.onScratchStack(dataDir: dataDir, out: out, settings: ["gateway": ["admin-key-file": keyFile]]) { stack, _ in
      try await measure(stack, keyFile: keyFile)
    }
  }

  private func measure(_ stack: Stack, keyFile: String) async throws -> String {
    var adminKey = ""
    for _ in 0..<100 where !adminKey.hasPrefix("rpk_") {
      adminKey = (try? String(contentsOfFile: keyFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
      if !adminKey.hasPrefix("rpk_") { try await Task.sleep(for: .milliseconds(100)) }
    }
    try? FileManager.default.removeItem(atPath: keyFile)
    guard adminKey.hasPrefix("rpk_") else { throw ValidationError("the gateway wrote no admin key") }
    return try await stack.withClients { clients in
      print("seeding \(customers) customers with an order each")
      let company = try await clients.customers.createCompany(.with { $0.company.legalName = "Bench Ltd" }).company.id
      var visible: [String] = []
      var hidden: [(customer: String, order: String)] = []
      for n in 0..<customers {
        let customer = try await clients.customers.createCustomer(.with { $0.email = "partner-bench-\(n)@example.com" }).customer.id
        let order = try await clients.orders.placeOrder(Bench.order(key: "partner-bench-\(n)", customer: customer)).order.id
        if n % 2 == 0 {
          _ = try await clients.customers.linkContact(.with { $0.companyID = company; $0.customerID = customer })
          visible.append(customer)
        } else {
          hidden.append((customer, order))
        }
      }
      let key = try await withClient(stack.address("gateway"), security: stack.clientSecurity) { raw in
        let admin = Rapport_Gateway_V1_PartnerAdmin.Client(wrapping: raw)
        let auth = Self.bearer(adminKey)
        let partner = try await admin.createPartner(.with { $0.name = "bench" }, metadata: auth).partner.id
        return try await admin.createKey(.with {
          $0.partnerID = partner
          $0.scopes = ["views:read", "customers:read", "orders:read"]
          $0.companyIds = [company]
          // The most a key may have: far above what this machine serves, so the limiter never refuses.
          $0.ratePerSecond = 10_000
          $0.burst = 10_000
        }, metadata: auth).secret
      }
      let bound = Self.bearer(key)
      let gateway = clients.gateway
      let bench = try Bench.parse(["--concurrency", "\(concurrency)", "--duration", "\(duration)"])
      let services = stack.processes.map(\.process)
      let ids = visible
      var rows: [Bench.Row] = []
      for round in 1...2 {
        rows.append(try await bench.load("GetCustomerView, no key (checks skipped) #\(round)", services) { n in
          _ = try await gateway.getCustomerView(.with { $0.customerID = ids[n % ids.count] })
        })
        rows.append(try await bench.load("GetCustomerView, bound key (auth, scope, rate limit, binding) #\(round)", services) { n in
          _ = try await gateway.getCustomerView(.with { $0.customerID = ids[n % ids.count] }, metadata: bound)
        })
      }
      func rate(_ prefix: String) -> Double {
        let matching = rows.filter { $0.name.hasPrefix(prefix) }
        return Double(matching.map(\.ok).reduce(0, +)) / matching.map(\.seconds).reduce(0, +)
      }
      let cost = rate("GetCustomerView, bound key") / rate("GetCustomerView, no key")
      var report = Bench.table(rows, concurrency: concurrency, duration: duration, customers: customers)
      report += String(
        format: "\n\n- view through a bound key / without checks: %.0f %% of the rate (target ≥ 85 %%, i.e. within 15 %%: %@)",
        cost * 100, cost >= 0.85 ? "met" : "missed")

      print("probing hidden and missing rows, \(probes) each, one at a time")
      let missing = (0..<probes).map { _ in UUID().uuidString.lowercased() }
      report += "\n\n| probe (bound key, one at a time, interleaved) | n | NOT_FOUND | p50 ms | p90 ms | mean ms | mean difference, 95 % CI | KS D (critical 5 %) |\n|---|---:|---:|---:|---:|---:|---:|---:|"
      let shapes: [(String, @Sendable (String, Metadata) async throws -> Void, [String])] = [
        ("GetCustomer", { id, auth in _ = try await gateway.getCustomer(.with { $0.customerID = id }, metadata: auth) }, hidden.map(\.customer)),
        ("GetOrder", { id, auth in _ = try await gateway.getOrder(.with { $0.orderID = id }, metadata: auth) }, hidden.map(\.order)),
      ]
      for (name, call, hiddenIDs) in shapes {
        var hiddenTimes: [Double] = []
        var missingTimes: [Double] = []
        var notFound = (hidden: 0, missing: 0)
        // Warm both paths first.
        for n in 0..<50 { try? await call(hiddenIDs[n % hiddenIDs.count], bound); try? await call(missing[n], bound) }
        // One of each kind per pair, in random order: with a fixed order (hidden, missing, missing,
        // hidden, …) the cycle lined up with the services' periodic work (e.g. each service's 5-second
        // pool gauge, about 24 cycles of four 52 ms probes), which then slowed one kind all run long.
        for n in 0..<probes {
          for isHidden in (Bool.random() ? [true, false] : [false, true]) {
            let id = isHidden ? hiddenIDs[n % hiddenIDs.count] : missing[n]
            let began = ContinuousClock.now
            var code: RPCError.Code?
            do { try await call(id, bound) } catch let error as RPCError { code = error.code }
            let ms = Bench.seconds(ContinuousClock.now - began) * 1000
            if isHidden {
              hiddenTimes.append(ms)
              if code == .notFound { notFound.hidden += 1 }
            } else {
              missingTimes.append(ms)
              if code == .notFound { notFound.missing += 1 }
            }
          }
        }
        let difference = Self.meanDifference(hiddenTimes, missingTimes)
        let d = Self.ksStatistic(hiddenTimes, missingTimes)
        let critical = 1.36 * (2.0 / Double(probes)).squareRoot()
        for (label, times, found) in [("hidden (another company's)", hiddenTimes, notFound.hidden), ("missing (no such id)", missingTimes, notFound.missing)] {
          let sorted = times.sorted()
          report += String(
            format: "\n| %@ %@ | %d | %d | %.3f | %.3f | %.3f | %@ | %@ |", name, label, times.count, found,
            sorted[sorted.count / 2], sorted[sorted.count * 9 / 10], times.reduce(0, +) / Double(times.count),
            label.hasPrefix("hidden") ? String(format: "%+.3f ± %.3f ms", difference.mean, difference.halfWidth) : "",
            label.hasPrefix("hidden") ? String(format: "%.3f (%.3f)", d, critical) : "")
        }
      }
      report += "\n\nA KS D below its critical value and a confidence interval that contains 0 mean the probes could not tell hidden rows from missing ones."
      return report
    }
  }

  static func bearer(_ key: String) -> Metadata {
    var metadata = Metadata()
    metadata.addString("Bearer \(key)", forKey: "authorization")
    return metadata
  }

  /// Mean of `a` minus mean of `b`, with the half-width of its 95 % confidence interval (Welch).
  static func meanDifference(_ a: [Double], _ b: [Double]) -> (mean: Double, halfWidth: Double) {
    func stats(_ x: [Double]) -> (mean: Double, variance: Double) {
      let mean = x.reduce(0, +) / Double(x.count)
      return (mean, x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(x.count - 1, 1)))
    }
    let (sa, sb) = (stats(a), stats(b))
    return (sa.mean - sb.mean, 1.96 * (sa.variance / Double(a.count) + sb.variance / Double(b.count)).squareRoot())
  }

  /// The two-sample Kolmogorov–Smirnov statistic: the largest distance between the empirical CDFs.
  static func ksStatistic(_ a: [Double], _ b: [Double]) -> Double {
    let (x, y) = (a.sorted(), b.sorted())
    var (i, j, d) = (0, 0, 0.0)
    while i < x.count && j < y.count {
      let value = min(x[i], y[j])
      while i < x.count && x[i] <= value { i += 1 }
      while j < y.count && y[j] <= value { j += 1 }
      d = max(d, abs(Double(i) / Double(x.count) - Double(j) / Double(y.count)))
    }
    return d
  }
}
