import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Histogram
import RapportCore
import RapportLocal
import RapportProtos
import SwiftProtobuf
import Synchronization

/// `rapport bench-analytics`: on its own stack and fresh embedded database, loads a synthetic shop with
/// `rapport seed`'s code (the import RPCs), then measures what issue 14's scale section asks for: every
/// analytics read one call at a time, a full model fit, and the event→metric lag while orders are placed
/// as fast as the order service takes them. Prints one Markdown report.
struct BenchAnalytics: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench-analytics", abstract: "Measure analytics at scale (issue 14's targets).")

  @Option(help: "Customers in the synthetic shop.") var customers = 100_000
  @Option(help: "Orders in the synthetic shop.") var orders = 1_000_000
  @Option(help: "Calls per read RPC.") var calls = 200
  @Option(help: "Seconds of maximum-rate ingest for the lag measurement.") var ingestSeconds = 10
  @Option(help: "Concurrent PlaceOrder callers during the lag measurement.") var writers = 8
  @Option(help: "Scratch data folder (deleted first).") var dataDir = ".rapport/bench-analytics"
  @Option(help: "Also write the report to this file.") var out: String?
  @Option(help: "The analytics service's --learned-time-zones: 1 learns New York from its first read (and keeps Berlin derived from Paris); 0 drops it and keeps its reads derived.")
  var learnedTimeZones = 1
  @Option(help: "The analytics service's --sub-hour-time-zones: true keeps a zone per clock a half or quarter hour off UTC (Asia/Kolkata among them; built in the background on a shop loaded without them, and waited for; the service's default); false drops them.")
  var subHourTimeZones = true
  @Flag(help: "Measure the shop an earlier run loaded into --data-dir (same --customers and --orders) instead of deleting it and seeding again; each run's lag measurement adds its orders.")
  var reuse = false

  func run() async throws {
    // RFM edges every 60 s (default 3600), so that the seeded shop is scored soon without a recomputation
    // over every customer competing with the reads all the time.
    let settings = [
      "analytics": [
        "rfm-interval-s": "60", "fit-interval-s": "86400", "segment-interval-s": "86400", "report-time-zones": Self.reportZone,
        // One zone learned from reads (New York, read first), so Berlin's reads stay derived from Paris's rows.
        "learned-time-zones": "\(learnedTimeZones)", "sub-hour-time-zones": "\(subHourTimeZones)",
      ]
    ]
    try await Bench.onScratchStack(dataDir: dataDir, out: out, settings: settings, keep: reuse) { stack, _ in
      try await withClient(stack.address("analytics"), security: stack.clientSecurity) { client in
        try await stack.withClients { clients in
          try await measure(stack, clients, Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client))
        }
      }
    }
  }

  typealias Analytics = Rapport_Analytics_V1_AnalyticsService.Client<HTTP2ClientTransport.Posix>

  private func measure(_ stack: Stack, _ clients: StackClients, _ analytics: Analytics) async throws -> String {
    var lines = ["## rapport bench-analytics: \(customers) customers, \(orders) orders", ""]
    lines.append("| step | seconds | rate |")
    lines.append("|---|---:|---:|")
    var population = Int64(customers)
    if reuse {
      lines.append("| shop loaded by an earlier run, reused (--reuse) | | |")
    } else {
      let shop = SyntheticShop(customers: customers, orders: orders, seed: 14, now: SyntheticShop.today())
      print("seeding \(customers) customers and about \(orders) orders through ImportCustomers and ImportOrders")
      // Analytics' backlog of order events while the import runs, once a second. (Its lag in seconds
      // means nothing here: imported events carry their orders' original times.)
      let (loaded, backlogs) = try await withThrowingTaskGroup(of: [Int64]?.self) { group in
        group.addTask {
          var seen: [Int64] = []
          while !Task.isCancelled {
            if let feed = try? await orderFeed(analytics), feed.reachable { seen.append(feed.backlog) }
            try? await Task.sleep(for: .seconds(1))
          }
          return seen
        }
        let loaded = try await shop.load(into: clients.customers, clients.orders, streams: 4, progress: { print($0) })
        group.cancelAll()
        return (loaded, try await group.next()!!.sorted())
      }
      population = Int64(loaded.customers.created)
      lines.append("| ImportCustomers, \(loaded.customers.created) created | \(f1(loaded.customerSeconds)) | \(Int(Double(loaded.customers.rows) / loaded.customerSeconds))/s |")
      lines.append("| ImportOrders (4 streams), \(loaded.orders.created) created, \(loaded.orders.failed) failed | \(f1(loaded.orderSeconds)) | \(Int(Double(loaded.orders.rows) / loaded.orderSeconds))/s |")
      if !backlogs.isEmpty {
        let median = backlogs[backlogs.count / 2], p99 = backlogs[min(backlogs.count - 1, backlogs.count * 99 / 100)]
        lines.append(
          "| analytics' backlog of order events during the import, \(backlogs.count) samples: median, p99, largest | | \(median), \(p99), \(backlogs.last!) |")
      }
    }

    // Analytics catches up with the order feed, then computes RFM edges (every 5 s here).
    let caughtUp = ContinuousClock.now
    while case let feed = try await orderFeed(analytics), feed.backlog > 0 || !feed.reachable {
      try await Task.sleep(for: .milliseconds(200))
    }
    lines.append("| analytics applies the order feed's backlog (after the import) | \(f1(SyntheticShop.seconds(since: caughtUp))) | |")
    // Zones kept but still being built (the sub-hour zones, on a shop loaded before they were kept):
    // their reads would be derived until they are ready.
    let building = try await analytics.getPipelineStatus(.init()).keptZones.filter { !$0.ready }.count
    if building > 0 {
      print("waiting for \(building) kept zones to be built")
      let started = ContinuousClock.now
      while try await analytics.getPipelineStatus(.init()).keptZones.contains(where: { !$0.ready }) {
        try await Task.sleep(for: .milliseconds(500))
      }
      lines.append("| \(building) kept zones built in the background (from the start's wait) | \(f1(SyntheticShop.seconds(since: started))) | |")
    }
    while try await analytics.getRfmEdges(.init()).population < population / 2 {
      try await Task.sleep(for: .milliseconds(500))
    }
    let fitStarted = ContinuousClock.now
    let model = try await analytics.fitPredictionModel(.with { $0.currency = "EUR" }).model
    lines.append(
      "| FitPredictionModel(EUR): BG/NBD + Gamma-Gamma over \(model.population) customers (\(model.spendPopulation) with repeat spend), call | \(f1(SyntheticShop.seconds(since: fitStarted))) | fit \(f1(model.fitSeconds)) s |")
    let segmentStarted = ContinuousClock.now
    let segment = try await analytics.putSegment(.with {
      $0.id = "recent-spenders"
      $0.rule = "spent(EUR, 90) > 10000 and orders >= 2"
    })
    lines.append("| PutSegment, first evaluation over every customer (\(segment.segment.memberCount) members) | \(f1(SyntheticShop.seconds(since: segmentStarted))) | |")

    // Reads, one at a time.
    var found: [String] = []
    for n in stride(from: 0, to: customers, by: max(1, customers / 200)) {
      found.append(try await clients.customers.findCustomer(.with { $0.email = SyntheticShop.email(n) }).customer.id)
    }
    let ids = found
    let year = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(-365 * 86_400))
    let tomorrow = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(86_400))
    @Sendable func sales(_ granularity: Rapport_Analytics_V1_Granularity, zone: String = "") -> Rapport_Analytics_V1_GetSalesSummaryRequest {
      .with {
        $0.timeZone = zone
        $0.from = year
        $0.to = tomorrow
        $0.granularity = granularity
        $0.currency = "EUR"
      }
    }
    @Sendable func cohorts(_ zone: String) -> Rapport_Analytics_V1_GetCohortRetentionRequest {
      .with {
        $0.from = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(-730 * 86_400))
        $0.to = tomorrow
        $0.timeZone = zone
      }
    }
    @Sendable func top(_ segment: Rapport_Analytics_V1_RfmSegment) -> Rapport_Analytics_V1_GetTopProductsRequest {
      .with {
        $0.from = year
        $0.to = tomorrow
        $0.currency = "EUR"
        $0.rfmSegment = segment
      }
    }
    // A zone the shop does not report in: the first read is derived from the kept rows and asks for the
    // zone; the service then learns it (builds its rows a month at a time) and keeps it.
    print("reading in \(Self.otherZone) until it is learned")
    let asked = ContinuousClock.now
    _ = try await analytics.getSalesSummary(sales(.day, zone: Self.otherZone))
    let derived = SyntheticShop.seconds(since: asked)
    let wasKept = try await keptZone(Self.otherZone, analytics)?.ready == true
    while learnedTimeZones > 0, try await keptZone(Self.otherZone, analytics)?.ready != true {
      try await Task.sleep(for: .milliseconds(200))
    }
    lines.append(
      wasKept
        ? "| \(Self.otherZone): learned by an earlier run, kept | | |"
        : "| GetSalesSummary (365 days by day, \(Self.otherZone)) before the zone is kept: derived, one call | \(f1(derived)) | |")
    if !wasKept && learnedTimeZones > 0 {
      lines.append("| \(Self.otherZone) learned: from that read until its rows are built and kept | \(f1(SyntheticShop.seconds(since: asked))) | |")
    }
    let otherZoneRow = learnedTimeZones > 0 ? "learned" : "not kept (--learned-time-zones 0)"
    // Zones a half or quarter hour off UTC: kept with `sub-hour-time-zones` (then a zone with the same
    // clocks is derived without slivers), derived from the orders near every boundary without.
    let subHourRow = subHourTimeZones ? "kept, a half hour off UTC" : "not kept (--sub-hour-time-zones false), a half hour off UTC"
    let sameClocksRow = subHourTimeZones ? "not kept, same clocks as \(Self.subHourZone)" : "not kept, a half hour off UTC"
    let reads: [(String, @Sendable (Int) async throws -> Void)] = [
      ("GetCustomerMetrics (RFM, prediction, segments, recommendations)", { n in _ = try await analytics.getCustomerMetrics(.with { $0.customerID = ids[n % ids.count] }) }),
      ("BatchGetCustomerMetrics (100 customers)", { n in
        _ = try await analytics.batchGetCustomerMetrics(.with { $0.customerIds = (0..<100).map { ids[(n * 100 + $0) % ids.count] } })
      }),
      ("GetCustomerPrediction", { n in _ = try await analytics.getCustomerPrediction(.with { $0.customerID = ids[n % ids.count] }) }),
      ("Recommend (10)", { n in _ = try await analytics.recommend(.with { $0.customerID = ids[n % ids.count] }) }),
      ("GetSimilarProducts (10)", { n in _ = try await analytics.getSimilarProducts(.with { $0.sku = "SKU-\(1 + n % 50)" }) }),
      ("GetRfmEdges", { _ in _ = try await analytics.getRfmEdges(.init()) }),
      ("GetPredictionModel", { _ in _ = try await analytics.getPredictionModel(.with { $0.currency = "EUR" }) }),
      ("GetSalesSummary (365 days by month)", { _ in _ = try await analytics.getSalesSummary(sales(.month)) }),
      ("GetSalesSummary (365 days by day)", { _ in _ = try await analytics.getSalesSummary(sales(.day)) }),
      ("GetSalesSummary (365 days by month, \(Self.reportZone), a reporting zone)", { _ in _ = try await analytics.getSalesSummary(sales(.month, zone: Self.reportZone)) }),
      ("GetSalesSummary (365 days by month, \(Self.otherZone), \(otherZoneRow))", { _ in _ = try await analytics.getSalesSummary(sales(.month, zone: Self.otherZone)) }),
      ("GetSalesSummary (365 days by week, \(Self.otherZone), \(otherZoneRow))", { _ in _ = try await analytics.getSalesSummary(sales(.week, zone: Self.otherZone)) }),
      ("GetSalesSummary (365 days by day, \(Self.otherZone), \(otherZoneRow))", { _ in _ = try await analytics.getSalesSummary(sales(.day, zone: Self.otherZone)) }),
      ("GetSalesSummary (365 days by day, \(Self.neighbourZone), not kept, same clocks as the reporting zone)", { _ in _ = try await analytics.getSalesSummary(sales(.day, zone: Self.neighbourZone)) }),
      ("GetSalesSummary (365 days by day, \(Self.subHourZone), \(subHourRow))", { _ in _ = try await analytics.getSalesSummary(sales(.day, zone: Self.subHourZone)) }),
      ("GetSalesSummary (365 days by month, \(Self.sameClocksZone), \(sameClocksRow))", { _ in _ = try await analytics.getSalesSummary(sales(.month, zone: Self.sameClocksZone)) }),
      ("GetSalesSummary (365 days by week, \(Self.sameClocksZone), \(sameClocksRow))", { _ in _ = try await analytics.getSalesSummary(sales(.week, zone: Self.sameClocksZone)) }),
      ("GetSalesSummary (365 days by day, \(Self.sameClocksZone), \(sameClocksRow))", { _ in _ = try await analytics.getSalesSummary(sales(.day, zone: Self.sameClocksZone)) }),
      ("GetTopProducts (365 days)", { _ in _ = try await analytics.getTopProducts(top(.unspecified)) }),
      ("GetTopProducts (365 days, RFM segment champions)", { _ in _ = try await analytics.getTopProducts(top(.champions)) }),
      ("GetCohortRetention (24 months)", { _ in _ = try await analytics.getCohortRetention(cohorts("")) }),
      ("GetCohortRetention (24 months, \(Self.reportZone), a reporting zone)", { _ in _ = try await analytics.getCohortRetention(cohorts(Self.reportZone)) }),
      ("GetCohortRetention (24 months, \(Self.otherZone), \(otherZoneRow))", { _ in _ = try await analytics.getCohortRetention(cohorts(Self.otherZone)) }),
      ("GetCohortRetention (24 months, \(Self.subHourZone), \(subHourRow))", { _ in _ = try await analytics.getCohortRetention(cohorts(Self.subHourZone)) }),
      ("GetCohortRetention (24 months, \(Self.sameClocksZone), \(sameClocksRow))", { _ in _ = try await analytics.getCohortRetention(cohorts(Self.sameClocksZone)) }),
      ("ListSegments", { _ in _ = try await analytics.listSegments(.init()) }),
      // The whole stream, to its last member.
      ("ListSegmentMembers (\(segment.segment.memberCount) members, streamed to the end, decoded by the Swift client)", { _ in
        try await analytics.listSegmentMembers(.with { $0.segmentID = segment.segment.id }) { response in
          for try await _ in response.messages {}
        }
      }),
      // The same members, a thousand per message.
      ("ListSegmentMemberPages (\(segment.segment.memberCount) members in pages of 1,000, streamed to the end, decoded by the Swift client)", { _ in
        try await analytics.listSegmentMemberPages(.with { $0.segmentID = segment.segment.id }) { response in
          for try await _ in response.messages {}
        }
      }),
      // The same stream to its first member, then cancelled: when a caller starts receiving.
      ("ListSegmentMembers (the first member, then cancelled)", { _ in
        try await analytics.listSegmentMembers(.with { $0.segmentID = segment.segment.id }) { response in
          for try await _ in response.messages { break }
        }
      }),
      ("GetPipelineStatus", { _ in _ = try await analytics.getPipelineStatus(.init()) }),
    ]
    lines += [
      "", "| read, one client, a first call then \(calls) calls | first call ms | p50 ms | p99 ms | max ms | p99 < 100 ms |",
      "|---|---:|---:|---:|---:|---|",
    ]
    for (name, call) in reads {
      print("measuring \(name)")
      // The first call (cold caches after the start) is reported on its own; the percentiles are the next calls'.
      let firstStarted = ContinuousClock.now
      try await call(calls)
      let first = Bench.seconds(ContinuousClock.now - firstStarted) * 1_000
      var histogram = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
      for n in 0..<calls {
        let began = ContinuousClock.now
        try await call(n)
        _ = histogram.record(UInt64(Bench.seconds(ContinuousClock.now - began) * 1_000_000))
      }
      let p99 = Double(histogram.valueAtPercentile(99)) / 1000
      lines.append("| \(name) | \(f1(first)) | \(ms(histogram.valueAtPercentile(50))) | \(ms(histogram.valueAtPercentile(99))) | \(ms(histogram.max)) | \(p99 < 100 ? "met" : "missed") |")
    }
    // The same whole stream received by a C HTTP/2 client that does not decode the members: how long
    // the service takes to send it, apart from a client's cost per message.
    print("measuring ListSegmentMembers with h2load")
    let stream = Bench.H2LoadTarget(
      name: "ListSegmentMembers", service: "analytics", address: stack.address("analytics"),
      path: "/rapport.analytics.v1.AnalyticsService/ListSegmentMembers",
      message: try Rapport_Analytics_V1_ListSegmentMembersRequest.with { $0.segmentID = segment.segment.id }.serializedBytes())
    let (streamedOK, streamed) = try await Bench.h2loadLatencies(stream, requests: calls)
    var received = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
    for micros in streamed { _ = received.record(micros) }
    let receivedP99 = Double(received.valueAtPercentile(99)) / 1000
    lines.append(
      "| ListSegmentMembers (\(segment.segment.memberCount) members, to the end) received by h2load, a C HTTP/2 client that does not decode them: \(calls) calls one at a time, \(streamedOK) counted OK by the service | | \(ms(received.valueAtPercentile(50))) | \(ms(received.valueAtPercentile(99))) | \(ms(received.max)) | \(receivedP99 < 100 && streamedOK == calls ? "met" : "missed") |")

    // Event→metric lag while writers place orders as fast as the order service takes them: a probe
    // customer orders every 250 ms and the time until GetCustomerMetrics counts it is the lag.
    print("measuring the event→metric lag under maximum ingest for \(ingestSeconds) s")
    // Unique per run: a reused shop keeps the probe customers and orders of earlier runs.
    let run = UUID().uuidString.prefix(8).lowercased()
    let probe = try await clients.customers.createCustomer(.with { $0.email = "lag-probe-\(run)@example.com" }).customer.id
    // The writers' customers: drawn at random from the whole shop for each run, as a shop's orders come
    // from many customers (a few fixed ones would pile every run's orders onto them in a reused shop).
    var drawn: [String] = []
    for _ in 0..<2000 {
      drawn.append(
        try await clients.customers.findCustomer(.with { $0.email = SyntheticShop.email(Int.random(in: 0..<customers)) }).customer.id)
    }
    let buyers = drawn
    let traffic = Traffic()
    var lag = Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three)
    // The order feed's cursor and head around the ingest: whether analytics kept up with the feed.
    let feedBefore = try await orderFeed(analytics)
    var backlogMax: Int64 = 0
    let ingestStarted = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
      for writer in 0..<writers {
        group.addTask {
          var n = 0
          while !traffic.stop.withLock({ $0 }) {
            _ = try await clients.orders.placeOrder(
              Self.order("lag-\(run)-\(writer)-\(n)", customer: buyers[(writer * 7919 + n) % buyers.count], sku: 1 + n % 200))
            traffic.placed.withLock { $0 += 1 }
            n += 1
          }
        }
      }
      var k = 0
      while SyntheticShop.seconds(since: ingestStarted) < Double(ingestSeconds) {
        _ = try await clients.orders.placeOrder(Self.order("probe-\(run)-\(k)", customer: probe, sku: 1))
        let acknowledged = ContinuousClock.now
        k += 1
        while try await analytics.getCustomerMetrics(.with { $0.customerID = probe }).metrics.orderCount < k {
          try await Task.sleep(for: .milliseconds(5))
        }
        _ = lag.record(UInt64(Bench.seconds(ContinuousClock.now - acknowledged) * 1_000_000))
        backlogMax = max(backlogMax, try await orderFeed(analytics).backlog)
        try await Task.sleep(for: .milliseconds(250))
      }
      traffic.stop.withLock { $0 = true }
      try await group.waitForAll()
    }
    let ingested = traffic.placed.withLock { $0 }
    let elapsed = SyntheticShop.seconds(since: ingestStarted)
    let rate = Double(ingested) / elapsed
    let feedAfter = try await orderFeed(analytics)
    lines += [
      "", "| event→metric lag, \(writers) writers placing \(Int(rate)) orders/s | probes | p50 ms | p99 ms | max ms | under 1 s |",
      "|---|---:|---:|---:|---:|---|",
      "| PlaceOrder acknowledged → GetCustomerMetrics counts it | \(lag.totalCount) | \(ms(lag.valueAtPercentile(50))) | \(ms(lag.valueAtPercentile(99))) | \(ms(lag.max)) | \(lag.max < 1_000_000 ? "met" : "missed") |",
      "",
      "| order feed during the ingest | events/s |",
      "|---|---:|",
      "| appended by the order service (head sequence) | \(Int(Double(feedAfter.headSequence - feedBefore.headSequence) / elapsed)) |",
      "| applied by analytics (cursor) | \(Int(Double(feedAfter.cursor - feedBefore.cursor) / elapsed)) |",
      "| largest backlog seen after a probe, and at the end (events) | \(backlogMax), \(feedAfter.backlog) |",
    ]
    return lines.joined(separator: "\n")
  }

  private func keptZone(_ zone: String, _ analytics: Analytics) async throws -> Rapport_Analytics_V1_KeptZoneStatus? {
    try await analytics.getPipelineStatus(.init()).keptZones.first { $0.zone == zone }
  }

  /// The shop's reporting zone (`--report-time-zones`), a zone it does not report in (learned from
  /// reads), and one with the reporting zone's clocks (not kept: derived from the reporting zone's rows).
  static let reportZone = "Europe/Paris", otherZone = "America/New_York", neighbourZone = "Europe/Berlin"
  /// A zone a half hour off UTC (kept with `sub-hour-time-zones`), and one with its clocks (not kept).
  static let subHourZone = "Asia/Kolkata", sameClocksZone = "Asia/Colombo"

  /// Analytics' view of the order feed (`GetPipelineStatus`).
  private func orderFeed(_ analytics: Analytics) async throws -> Rapport_Analytics_V1_SourceStatus {
    try await analytics.getPipelineStatus(.init()).sources.first { $0.source == "order" } ?? .init()
  }

  /// A one-line web order of 10 EUR.
  static func order(_ key: String, customer: String, sku: Int) -> Rapport_Order_V1_PlaceOrderRequest {
    .with {
      $0.idempotencyKey = key
      $0.customerID = customer
      $0.channel = .web
      $0.currency = "EUR"
      $0.lines = [.with {
        $0.sku = "SKU-\(sku)"
        $0.title = "Product \(sku)"
        $0.quantity = 1
        $0.unitPriceMinor = 1_000
      }]
    }
  }

  final class Traffic: Sendable {
    let stop = Mutex(false)
    let placed = Mutex(0)
  }

  private func f1(_ seconds: Double) -> String { String(format: "%.1f", seconds) }
  private func ms(_ micros: UInt64) -> String { String(format: "%.1f", Double(micros) / 1000) }
}
