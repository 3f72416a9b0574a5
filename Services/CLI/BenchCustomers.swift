import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Histogram
import Logging
import RapportCore
import RapportLocal
import RapportProtos
import SwiftProtobuf

/// `rapport bench-customers`: on its own stack and fresh embedded database, imports a generated CSV
/// (timed, then again to time the idempotent path), grows the customer table to `--customers` rows with
/// further imports, then measures SearchCustomers one query at a time. Prints one Markdown report.
struct BenchCustomers: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-customers", abstract: "Measure customer import and search at scale.")

  @Option(help: "Rows in the timed import.")
  var importRows = 100_000

  @Option(help: "Customers in the table when search is measured.")
  var customers = 1_000_000

  @Option(help: "Queries per search shape.")
  var queries = 200

  @Option(help: "Scratch data folder (deleted first).")
  var dataDir = ".rapport/bench-customers"

  @Option(help: "Also write the report to this file.")
  var out: String?

  func run() async throws {
    try await Bench.onScratchStack(dataDir: dataDir, out: out) { stack, directory in
      try await measure(stack, directory: directory)
    }
  }

  private func measure(_ stack: Stack, directory: String) async throws -> String {
    try await stack.withClients { clients in
      let api = clients.customers
      var lines = ["| step | rows | seconds | rows/s | created | existing | failed |", "|---|---:|---:|---:|---:|---:|---:|"]
      func record(_ step: String, _ result: (response: Rapport_Customer_V1_ImportCustomersResponse, seconds: Double)) {
        let r = result.response
        lines.append(
          "| \(step) | \(r.rows) | \(String(format: "%.1f", result.seconds)) | \(Int(Double(r.rows) / result.seconds)) | \(r.created) | \(r.existing) | \(r.failed) |")
      }
      let first = "\(directory)/customers-0.csv"
      try Self.writeCSV(first, from: 0, count: importRows)
      print("importing \(importRows) rows")
      record("import \(importRows) new rows", try await CustomerCSV.importFile(first, into: api, progress: { _, _ in }))
      record("same file again (all known)", try await CustomerCSV.importFile(first, into: api, progress: { _, _ in }))
      var loaded = importRows
      var seeding = 0.0
      while loaded < customers {
        let count = min(200_000, customers - loaded)
        let path = "\(directory)/customers-\(loaded).csv"
        try Self.writeCSV(path, from: loaded, count: count)
        print("growing the table to \(loaded + count) customers")
        let result = try await CustomerCSV.importFile(path, into: api, progress: { _, _ in })
        seeding += result.seconds
        loaded += count
        try? FileManager.default.removeItem(atPath: path)
      }
      if customers > importRows {
        lines.append("| grow to \(customers) customers (further imports) | \(customers - importRows) | \(String(format: "%.1f", seeding)) | \(Int(Double(customers - importRows) / seeding)) | | | |")
      }
      lines.append("")
      lines.append("| SearchCustomers at \(loaded) customers, one at a time | queries | hits/query | p50 ms | p99 ms | max ms |")
      lines.append("|---|---:|---:|---:|---:|---:|")
      let total = loaded
      let shapes: [(String, @Sendable (Int) -> Rapport_Customer_V1_SearchCustomersRequest)] = [
        ("common name fragment (1 in 50 rows)", { n in .with { $0.query = Self.family[n % Self.family.count].lowercased() } }),
        ("rare email fragment (1 row)", { n in .with { $0.query = ".\((n * 7919) % total)@" } }),
        ("tag (1 in 100 rows)", { _ in .with { $0.tag = "vip" } }),
        ("channel (1 in 4 rows)", { _ in .with { $0.channel = .marketplace } }),
        ("fragment + tag", { n in .with { $0.query = Self.given[n % Self.given.count].lowercased(); $0.tag = "newsletter" } }),
        ("newest first, no filter", { _ in .init() }),
      ]
      for (name, request) in shapes {
        print("measuring search: \(name)")
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)
        var hits = 0
        for n in 0..<queries {
          let began = ContinuousClock.now
          let response = try await api.searchCustomers(request(n).changed { $0.pageSize = 20 })
          _ = histogram.record(UInt64(Bench.seconds(ContinuousClock.now - began) * 1_000_000))
          hits += response.customers.count
        }
        func ms(_ micros: UInt64) -> String { String(format: "%.2f", Double(micros) / 1000) }
        lines.append(
          "| \(name) | \(queries) | \(hits / queries) | \(ms(histogram.valueAtPercentile(50))) | \(ms(histogram.valueAtPercentile(99))) | \(ms(histogram.max)) |")
      }
      return lines.joined(separator: "\n")
    }
  }

  static let given = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Radia", "Niklaus",
    "Frances", "John", "Hedy", "Dennis", "Katherine", "Tim", "Shafi", "Leslie", "Sophie", "Linus"]
  static let family = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson",
    "Perlman", "Wirth", "Allen", "McCarthy", "Lamarr", "Ritchie", "Johnson", "Berners", "Goldwasser", "Lamport",
    "Wilson", "Torvalds", "Kay", "Engelbart", "Backus", "Codd", "Gray", "Stonebraker", "Cerf", "Kahn", "Postel",
    "Clark", "Shannon", "Neumann", "Church", "Godel", "Babbage", "Boole", "Hollerith", "Zuse", "Aiken", "Eckert",
    "Mauchly", "Kilburn", "Wilkes", "Hoare", "Milner", "Floyd", "Tarjan", "Karp", "Cook", "Rabin"]

  /// Writes `count` synthetic customers starting at number `start`: unique emails, a phone for every
  /// third, a marketplace id for every fourth, tags vip (1 %) and newsletter (1 in 7).
  static func writeCSV(_ path: String, from start: Int, count: Int) throws {
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    guard let handle = FileHandle(forWritingAtPath: path) else { throw ValidationError("cannot write \(path)") }
    defer { try? handle.close() }
    var chunk = "email,phone,given_name,family_name,channel,external_id,tags,language\n"
    let channels = ["web", "mobile", "store", "marketplace"]
    for n in start..<(start + count) {
      let given = given[n % given.count]
      let family = family[(n / given.count) % family.count]
      let phone = n % 3 == 0 ? "+4915\(String(format: "%09d", n))" : ""
      let channel = channels[n % 4]
      let external = channel == "marketplace" ? "mp-\(n)" : ""
      let tags = [n % 100 == 0 ? "vip" : nil, n % 7 == 0 ? "newsletter" : nil].compactMap { $0 }.joined(separator: ";")
      chunk += "\(given.lowercased()).\(family.lowercased()).\(n)@example.com,\(phone),\(given),\(family),\(channel),\(external),\(tags),en\n"
      if chunk.utf8.count > 1 << 20 {
        handle.write(Data(chunk.utf8))
        chunk = ""
      }
    }
    handle.write(Data(chunk.utf8))
  }
}
