import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import SwiftProtobuf
import Testing

@testable import AnalyticsService

/// `GetSalesSummary` and `GetTopProducts` over events applied to a running analytics service's schema.
@Suite(.hangLimit) struct AnalyticsSalesTests {
  static func at(_ text: String) -> Date { ISO8601DateFormatter().date(from: text)! }
  static func stamp(_ text: String) -> Google_Protobuf_Timestamp { .init(microsecondsOf: at(text)) }

  static func placed(
    _ order: UUID, _ customer: UUID, at time: String, channel: Rapport_Common_V1_Channel = .web, currency: String = "EUR",
    lines: [(String, Int64, Int64)]
  ) -> Rapport_Events_V1_Event.OneOf_Payload {
    .orderPlaced(.with {
      $0.orderID = order.uuidString
      $0.customerID = customer.uuidString
      $0.channel = channel
      $0.placedAt = stamp(time)
      $0.total = .money(lines.reduce(0) { $0 + $1.1 * $1.2 }, currency)
      $0.lines = lines.map { sku, quantity, price in
        .with {
          $0.sku = sku
          $0.title = "\(sku) title"
          $0.quantity = quantity
          $0.unitPriceMinor = price
        }
      }
    })
  }

  /// c1 orders on 1 and 2 March (23:30 UTC: 3 March in Paris), c2 on 2 March (store) and 3 March
  /// (cancelled), c3 in February and on 3 March (1 000 refunded), c4 in pounds.
  func withSales(_ body: @Sendable (Rapport_Analytics_V1_AnalyticsService.Client<HTTP2ClientTransport.Posix>) async throws -> Void)
    async throws
  {
    let database = try await TestDatabase.create()
    let refusing = try SilentListener(listening: false)
    defer { refusing.stop() }
    let closed = HostPort(host: "127.0.0.1", port: refusing.port)
    let config = testConfig("analytics", database)
    let app = try AnalyticsApp.build(config: config, orderAddress: closed, supportAddress: closed, logger: testLogger("analytics"))
    try await withRunningService(app) { address in
      let pool = try ServiceApp.makePostgres(config: config, logger: testLogger("sales"))
      try await withThrowingDiscardingTaskGroup { group in
        group.addTask { await pool.client.run() }
        let events = AnalyticsRfmTests.Harness(store: AnalyticsStore(client: pool, logger: testLogger("sales")))
        let (c1, c2, c3, c4) = (UUID(), UUID(), UUID(), UUID())
        let cancelled = UUID(), refunded = UUID()
        try await events.apply(
          "order",
          Self.placed(UUID(), c1, at: "2026-03-01T10:00:00Z", lines: [("TEA", 2, 3_000), ("MUG", 1, 4_000)]),
          Self.placed(UUID(), c1, at: "2026-03-02T23:30:00Z", lines: [("TEA", 1, 5_000)]),
          Self.placed(UUID(), c2, at: "2026-03-02T12:00:00Z", channel: .store, lines: [("PEN", 2, 1_000)]),
          Self.placed(cancelled, c2, at: "2026-03-03T00:30:00Z", lines: [("MUG", 3, 1_000)]),
          Self.placed(UUID(), c3, at: "2026-02-20T08:00:00Z", lines: [("TEA", 1, 7_000)]),
          Self.placed(refunded, c3, at: "2026-03-03T09:00:00Z", lines: [("MUG", 1, 4_000)]),
          Self.placed(UUID(), c4, at: "2026-03-02T09:00:00Z", currency: "GBP", lines: [("TEA", 1, 900)]),
          .orderCancelled(.with { $0.orderID = cancelled.uuidString }),
          .orderRefunded(.with {
            $0.orderID = refunded.uuidString
            $0.amountRefunded = .money(1_000, "EUR")
          }))
        try await withClient(to: address) { client in
          try await body(Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client))
        }
        group.cancelAll()
      }
    }
  }

  static func summary(
    _ granularity: Rapport_Analytics_V1_Granularity, zone: String = "", channel: Rapport_Common_V1_Channel = .unspecified,
    from: String = "2026-03-01T00:00:00Z", to: String = "2026-03-04T00:00:00Z"
  ) -> Rapport_Analytics_V1_GetSalesSummaryRequest {
    .with {
      $0.from = stamp(from)
      $0.to = stamp(to)
      $0.granularity = granularity
      $0.currency = "EUR"
      $0.timeZone = zone
      $0.channel = channel
    }
  }

  /// (start, orders, net, new, returning) of each period.
  static func rows(_ periods: [Rapport_Analytics_V1_SalesPeriod]) -> [String] {
    periods.map {
      "\(ISO8601DateFormatter().string(from: $0.start.date)) \($0.orders) \($0.netRevenue.amountMinor) \($0.newCustomers) \($0.returningCustomers)"
    }
  }

  @Test func salesPerDayWeekAndMonthInATimeZoneAndPerChannel() async throws {
    try await withSales { api in
      let days = try await api.getSalesSummary(Self.summary(.day))
      #expect(Self.rows(days.periods) == [
        "2026-03-01T00:00:00Z 1 10000 1 0", "2026-03-02T00:00:00Z 2 7000 1 1", "2026-03-03T00:00:00Z 1 3000 0 1",
      ])
      #expect(Self.rows([days.total]) == ["2026-03-01T00:00:00Z 4 20000 2 1"])
      #expect(days.periods[1].averageOrderValue == .money(3_500, "EUR"))
      // In Paris (UTC+1) c1's 23:30 UTC order belongs to 3 March; days start at 23:00 UTC.
      let paris = try await api.getSalesSummary(
        Self.summary(.day, zone: "Europe/Paris", from: "2026-02-28T23:00:00Z", to: "2026-03-03T23:00:00Z"))
      #expect(Self.rows(paris.periods) == [
        "2026-02-28T23:00:00Z 1 10000 1 0", "2026-03-01T23:00:00Z 1 2000 1 0", "2026-03-02T23:00:00Z 2 8000 0 2",
      ])
      // Weeks start on Monday: 1 March 2026 is a Sunday.
      let weeks = try await api.getSalesSummary(Self.summary(.week))
      #expect(Self.rows(weeks.periods) == ["2026-02-23T00:00:00Z 1 10000 1 0", "2026-03-02T00:00:00Z 3 10000 1 2"])
      let month = try await api.getSalesSummary(Self.summary(.month))
      #expect(Self.rows(month.periods) == ["2026-03-01T00:00:00Z 4 20000 2 1"])
      let web = try await api.getSalesSummary(Self.summary(.day, channel: .web))
      #expect(Self.rows(web.periods) == [
        "2026-03-01T00:00:00Z 1 10000 1 0", "2026-03-02T00:00:00Z 1 5000 0 1", "2026-03-03T00:00:00Z 1 3000 0 1",
      ])
      // An empty range of days still lists its days.
      let quiet = try await api.getSalesSummary(Self.summary(.day, from: "2026-04-01T00:00:00Z", to: "2026-04-03T00:00:00Z"))
      #expect(Self.rows(quiet.periods) == ["2026-04-01T00:00:00Z 0 0 0 0", "2026-04-02T00:00:00Z 0 0 0 0"])
    }
  }

  @Test func topProductsByNetLineRevenueExcludingCancelledOrders() async throws {
    try await withSales { api in
      let request = Rapport_Analytics_V1_GetTopProductsRequest.with {
        $0.from = Self.stamp("2026-03-01T00:00:00Z")
        $0.to = Self.stamp("2026-03-04T00:00:00Z")
        $0.currency = "EUR"
      }
      let all = try await api.getTopProducts(request).products
      #expect(all.map { "\($0.sku) \($0.quantity) \($0.netRevenue.amountMinor) \($0.orders)" } == [
        "TEA 3 11000 2", "MUG 2 8000 2", "PEN 2 2000 1",
      ])
      #expect(all.first?.title == "TEA title")
      let web = try await api.getTopProducts(request.changed { $0.channel = .web; $0.limit = 1 }).products
      #expect(web.map(\.sku) == ["TEA"])
      // Per RFM segment (AnalyticsRfmTests checks the scoring and the filter): a subset of all.
      let champions = try await api.getTopProducts(request.changed { $0.rfmSegment = .champions }).products
      #expect(Set(champions.map(\.sku)).isSubset(of: Set(all.map(\.sku))))
      await expectStatus(.invalidArgument, field: "rfm_segment") {
        try await api.getTopProducts(request.changed { $0.rfmSegment = .UNRECOGNIZED(42) })
      }
    }
  }

  @Test func cohortsByFirstOrderMonthWithTheirActiveCustomersPerMonthSince() async throws {
    try await withSales { api in
      let cohorts = try await api.getCohortRetention(.with {
        $0.from = Self.stamp("2026-01-15T00:00:00Z")
        $0.to = Self.stamp("2026-04-01T00:00:00Z")
      }).cohorts
      // Months from each cohort's month to the current one (UTC), for the length of `active`.
      let now = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: Date())
      func since(_ month: Int) -> Int { (now.year! - 2026) * 12 + now.month! - month }
      // February: c3 (ordered again in March). March: c1, c2 and c4 (in pounds: any currency counts).
      #expect(cohorts.map { ISO8601DateFormatter().string(from: $0.month.date) } == ["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"])
      #expect(cohorts.map(\.customers) == [1, 3])
      #expect(cohorts.first?.active == [1, 1] + Array(repeating: 0, count: since(2) - 1))
      #expect(cohorts.last?.active == [3] + Array(repeating: 0, count: since(3)))
      await expectStatus(.invalidArgument, field: "to") {
        try await api.getCohortRetention(.with {
          $0.from = Self.stamp("2026-01-01T00:00:00Z")
          $0.to = Self.stamp("2040-01-01T00:00:00Z")
        })
      }
    }
  }

  @Test func badRangesCurrenciesZonesAndLimitsAreRefusedByField() async throws {
    try await withSales { api in
      let good = Self.summary(.day)
      await expectStatus(.invalidArgument, field: "from") { try await api.getSalesSummary(good.changed { $0.clearFrom() }) }
      await expectStatus(.invalidArgument, field: "to") { try await api.getSalesSummary(good.changed { $0.to = $0.from }) }
      await expectStatus(.invalidArgument, field: "to") {
        try await api.getSalesSummary(good.changed { $0.to = Self.stamp("2029-01-01T00:00:00Z") })
      }
      await expectStatus(.invalidArgument, field: "granularity") {
        try await api.getSalesSummary(good.changed { $0.granularity = .unspecified })
      }
      await expectStatus(.invalidArgument, field: "currency") { try await api.getSalesSummary(good.changed { $0.currency = "EURO" }) }
      await expectStatus(.invalidArgument, field: "time_zone") {
        try await api.getSalesSummary(good.changed { $0.timeZone = "Mars/Olympus_Mons" })
      }
      await expectStatus(.invalidArgument, field: "channel") {
        try await api.getSalesSummary(good.changed { $0.channel = .UNRECOGNIZED(99) })
      }
      await expectStatus(.invalidArgument, field: "customer_id") { try await api.recommend(.with { $0.customerID = "nope" }) }
      await expectStatus(.invalidArgument, field: "limit") {
        try await api.recommend(.with {
          $0.customerID = UUID().uuidString
          $0.limit = 101
        })
      }
      await expectStatus(.invalidArgument, field: "sku") { try await api.getSimilarProducts(.init()) }
      await expectStatus(.notFound) { try await api.getSimilarProducts(.with { $0.sku = "NO-SUCH-SKU" }) }
      let similar = try await api.getSimilarProducts(.with { $0.sku = "TEA" }).products
      #expect(similar.map(\.sku) == ["MUG"])
      await expectStatus(.invalidArgument, field: "limit") {
        try await api.getTopProducts(.with {
          $0.from = good.from
          $0.to = good.to
          $0.currency = "EUR"
          $0.limit = 101
        })
      }
    }
  }

  /// Which parts of a range the product rollups answer: whole UTC months, whole UTC days, and the orders
  /// of the partial days at either end.
  @Test func aRangeIsCoveredByWholeMonthsWholeDaysAndPartialDays() {
    typealias Cover = AnalyticsStore.RollupCover
    let wide = Cover(from: Self.at("2026-01-30T10:00:00Z"), to: Self.at("2026-04-02T05:00:00Z"))
    // 10:00 is early in the day: the day is read whole, less its first ten hours.
    #expect(wide.days == Self.at("2026-01-30T00:00:00Z")..<Self.at("2026-04-02T00:00:00Z"))
    #expect(wide.less == Self.at("2026-01-30T00:00:00Z")..<Self.at("2026-01-30T10:00:00Z"))
    #expect(wide.months == Self.at("2026-02-01T00:00:00Z")..<Self.at("2026-04-01T00:00:00Z"))
    let aligned = Cover(from: Self.at("2026-02-01T00:00:00Z"), to: Self.at("2026-03-01T00:00:00Z"))
    #expect(aligned.days == aligned.months && aligned.months == Self.at("2026-02-01T00:00:00Z")..<Self.at("2026-03-01T00:00:00Z"))
    let daysOnly = Cover(from: Self.at("2026-02-03T12:00:00Z"), to: Self.at("2026-02-10T00:00:00Z"))
    #expect(daysOnly.days == Self.at("2026-02-04T00:00:00Z")..<Self.at("2026-02-10T00:00:00Z") && daysOnly.months.isEmpty)
    let withinADay = Cover(from: Self.at("2026-02-03T12:00:00Z"), to: Self.at("2026-02-03T18:00:00Z"))
    #expect(withinADay.days.isEmpty && withinADay.months.isEmpty && withinADay.days.lowerBound == Self.at("2026-02-03T18:00:00Z"))
    // Ending after now: the last day is whole (nothing of it lies past the range), so is its month when
    // the next day starts a month.
    let open = Cover(from: Self.at("2026-01-30T10:00:00Z"), to: Self.at("2026-03-31T05:00:00Z"), now: Self.at("2026-03-31T03:00:00Z"))
    #expect(open.days == Self.at("2026-01-30T00:00:00Z")..<Self.at("2026-04-01T00:00:00Z"))
    #expect(open.months == Self.at("2026-02-01T00:00:00Z")..<Self.at("2026-04-01T00:00:00Z"))
    let past = Cover(from: Self.at("2026-01-30T10:00:00Z"), to: Self.at("2026-03-31T05:00:00Z"), now: Self.at("2026-03-31T06:00:00Z"))
    #expect(past.days == Self.at("2026-01-30T00:00:00Z")..<Self.at("2026-03-31T00:00:00Z"))
    // March is read whole less its last day (one day row against thirty).
    #expect(past.months == Self.at("2026-02-01T00:00:00Z")..<Self.at("2026-04-01T00:00:00Z") && past.lessAfter.isEmpty)
    // Ending late in a day: the day is read whole, less its hours after the range.
    let lateEnd = Cover(from: Self.at("2026-01-03T00:00:00Z"), to: Self.at("2026-03-10T20:00:00Z"))
    #expect(lateEnd.days == Self.at("2026-01-03T00:00:00Z")..<Self.at("2026-03-11T00:00:00Z"))
    #expect(lateEnd.lessAfter == Self.at("2026-03-10T20:00:00Z")..<Self.at("2026-03-11T00:00:00Z"))
    // Starting on the 3rd: January is read whole less its first two days; March's ten days are days.
    #expect(lateEnd.months == Self.at("2026-01-01T00:00:00Z")..<Self.at("2026-03-01T00:00:00Z"))
    // Within one month that ends after now: the month whole, less its days before the range.
    let thisMonth = Cover(from: Self.at("2026-03-04T00:00:00Z"), to: Self.at("2026-03-21T00:00:00Z"), now: Self.at("2026-03-20T09:00:00Z"))
    #expect(thisMonth.months == Self.at("2026-03-01T00:00:00Z")..<Self.at("2026-04-01T00:00:00Z"))
    #expect(thisMonth.days == Self.at("2026-03-04T00:00:00Z")..<Self.at("2026-03-21T00:00:00Z"))
    // Starting early in a day: the day is read whole, less its hours before the range; late in a day:
    // the rest of the day is read from the orders.
    let early = Cover(from: Self.at("2026-01-31T03:00:00Z"), to: Self.at("2026-03-31T05:00:00Z"))
    #expect(early.days == Self.at("2026-01-31T00:00:00Z")..<Self.at("2026-03-31T00:00:00Z"))
    #expect(early.less == Self.at("2026-01-31T00:00:00Z")..<Self.at("2026-01-31T03:00:00Z"))
    #expect(early.months == Self.at("2026-02-01T00:00:00Z")..<Self.at("2026-04-01T00:00:00Z"))
    let late = Cover(from: Self.at("2026-01-31T20:00:00Z"), to: Self.at("2026-03-31T05:00:00Z"))
    #expect(late.days.lowerBound == Self.at("2026-02-01T00:00:00Z") && late.less.isEmpty)
  }

  /// A range that starts early in a day reads the day's rollup less the orders before the range: a
  /// product sold before and after the start counts only after, one sold only before does not show.
  @Test func aDayReadWholeLessItsHoursBeforeTheRange() async throws {
    try await AnalyticsRfmTests.withService { _, events, _ in
      let day = Self.at("2026-05-04T00:00:00Z")
      func order(_ hours: Double, _ lines: [(String, Int64)]) -> Rapport_Events_V1_Event.OneOf_Payload {
        .orderPlaced(.with {
          $0.orderID = UUID().uuidString
          $0.customerID = UUID().uuidString
          $0.placedAt = .init(date: day.addingTimeInterval(hours * 3_600))
          $0.total = .money(lines.reduce(0) { $0 + $1.1 * 100 }, "EUR")
          $0.lines = lines.map { sku, quantity in .with { $0.sku = sku; $0.quantity = quantity; $0.unitPriceMinor = 100 } }
        })
      }
      try await events.apply(
        "order", all: [order(1, [("TEA", 2)]), order(2, [("PEN", 5)]), order(5, [("TEA", 1), ("MUG", 1)]), order(34, [("MUG", 1)])])
      let range = AnalyticsStore.SalesRange(from: day.addingTimeInterval(3 * 3_600), to: day.addingTimeInterval(48 * 3_600), currency: "EUR", channel: 0)
      #expect(AnalyticsStore.RollupCover(from: range.from, to: range.to).less == day..<range.from)
      let top = try await events.store.topProducts(range, limit: 10, now: day.addingTimeInterval(72 * 3_600))
      #expect(top.map { "\($0.sku) \($0.quantity) \($0.netRevenue.amountMinor) \($0.orders)" } == ["MUG 2 200 2", "TEA 1 100 1"])
    }
  }

  /// A reporting zone that is not an IANA name stops the service at start, naming it.
  @Test func reportTimeZonesMustBeIANANames() async throws {
    let database = try await TestDatabase.create()
    let address = HostPort(host: "127.0.0.1", port: 1)
    for bad in ["Mars/Olympus_Mons", "Europe/Paris'--", ""] {
      let error = #expect(throws: ConfigurationError.self) {
        try AnalyticsApp.build(
          config: testConfig("analytics", database), orderAddress: address, supportAddress: address,
          reportTimeZones: ["Europe/Paris", bad], logger: testLogger("analytics"))
      }
      #expect(error?.description.contains("report-time-zones") == true && error?.description.contains("'\(bad)'") == true)
    }
    _ = try AnalyticsApp.build(
      config: testConfig("analytics", database), orderAddress: address, supportAddress: address,
      reportTimeZones: ["Europe/Paris", "Asia/Kolkata"], logger: testLogger("analytics"))
  }

  /// The integer calendar arithmetic of the kept aggregates cuts days, weeks (from Monday) and months
  /// as the Gregorian calendar does, before and after 1970 and across leap days — in UTC, and in zones
  /// with summer time (both hemispheres), a half-hour offset and a changed offset — when a local day is
  /// first cut and when it is found among those cut before; a midnight passed twice as PostgreSQL reads it.
  @Test(arguments: ["UTC", "Europe/Paris", "America/Sao_Paulo", "Asia/Kolkata", "Australia/Sydney", "Pacific/Apia"])
  func keptPeriodsStartWhereTheCalendarSays(zone: String) throws {
    var calendar = Calendar(identifier: .iso8601)
    calendar.timeZone = TimeZone(identifier: zone)!
    let kept = try #require(KeptZone(zone))
    var random = SeededRandom(seed: 3)
    let days = (0..<3_000).map { _ in Double(Int(random.next() % 146_000) - 73_000) * 86_400 + Double(random.next() % 86_400) }
      + [Self.at("2024-02-29T23:59:59Z"), Self.at("2000-03-01T00:00:00Z"), Self.at("1969-12-31T12:00:00Z"),
         Self.at("2024-03-31T00:30:00Z"), Self.at("2024-10-27T00:30:00Z"), Self.at("2011-12-30T10:00:00Z"),
         Self.at("1944-10-07T12:00:00Z"), Self.at("1944-10-07T22:30:00Z")].map(\.timeIntervalSince1970)
    // Twice: the second pass, and instants near each date, find the local days the first one cut.
    for seconds in days + days.flatMap({ day in [0, 1, -1, 3_599, -3_600, 39_600, -39_600].map { day + $0 } }) {
      let date = Date(timeIntervalSince1970: seconds)
      let expected = [Calendar.Component.day, .weekOfYear, .month].map { Self.laterMidnight(calendar.dateInterval(of: $0, for: date)!.start, calendar.timeZone) }
      #expect(kept.starts(of: date) == expected, "\(zone) \(date)")
    }
    #expect(KeptZone("Europe/Paris'; DROP TABLE x; --") == nil)
    #expect(KeptZone("Mars/Olympus_Mons") == nil)
  }

  /// Days, weeks and months start where PostgreSQL's `date_trunc(unit, t, zone)` puts them, every half
  /// hour from 26 hours before to 26 hours after each change of offset from 1940 to 2030, in zones whose
  /// clocks pass a midnight twice (Havana and Tunis, either side of UTC; Goose Bay at 00:01), skip one
  /// (São Paulo), skip a day (Apia), or moved a half hour (Kolkata).
  @Test func keptPeriodsStartWherePostgreSQLCutsThem() async throws {
    let database = try await TestDatabase.create()
    let pool = try ServiceApp.makePostgres(config: testConfig("analytics", database), logger: testLogger("zones"))
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { await pool.client.run() }
      for name in ["America/Havana", "Africa/Tunis", "America/Goose_Bay", "Europe/Paris", "America/Sao_Paulo", "Pacific/Apia", "Asia/Kolkata"] {
        let zone = try #require(KeptZone(name)), timeZone = try #require(TimeZone(identifier: name))
        var instants: [Date] = [], after = Self.at("1940-01-01T00:00:00Z")
        while let change = timeZone.nextDaylightSavingTimeTransition(after: after), change < Self.at("2030-01-01T00:00:00Z") {
          instants += stride(from: -26.0, through: 26, by: 0.5).map { change.addingTimeInterval($0 * 3_600) }
          after = change
        }
        #expect(instants.count > 400, "\(name)")
        let rows = try await pool.client.query(
          """
          SELECT date_trunc('day', t, \(name)), date_trunc('week', t, \(name)), date_trunc('month', t, \(name))
          FROM unnest(\(instants)::timestamptz[]) WITH ORDINALITY AS u(t, n) ORDER BY n
          """, logger: testLogger("zones"))
        var index = 0
        for try await (day, week, month) in rows.decode((Date, Date, Date).self) {
          #expect(zone.starts(of: instants[index]) == [day, week, month], "\(name) \(instants[index])")
          index += 1
        }
        #expect(index == instants.count)
      }
      group.cancelAll()
    }
  }

  /// The instant PostgreSQL reads the local midnight starting at `start` (Foundation's reading) as: a
  /// midnight the clocks passed twice (Paris, 8 October 1944: 01:00 back to 00:00) is the later one.
  static func laterMidnight(_ start: Date, _ zone: TimeZone) -> Date {
    let wall = start.addingTimeInterval(Double(zone.secondsFromGMT(for: start)))
    let offsets = Set([-86_400.0, 0, 86_400].map { zone.secondsFromGMT(for: start.addingTimeInterval($0)) })
    return ([start] + offsets.map { wall.addingTimeInterval(-Double($0)) }.filter {
      Double(zone.secondsFromGMT(for: $0)) == wall.timeIntervalSince($0)
    }).max()!
  }

  /// 240 orders at seeded random times over 100 days (two channels, two currencies, a product twice in
  /// one order, one in eight cancelled afterwards): for ranges aligned and not, top products read from
  /// the rollups equal the same sums over the orders, computed here and read from the orders by the
  /// store (its per-customer path); the sales summary counts a customer whose first order was cancelled
  /// as new at their next one.
  struct Totals {
    var quantity: Int64 = 0, net: Int64 = 0
    var orders: Set<Int> = []

    mutating func add(_ quantity: Int64, _ net: Int64, order: Int) {
      self.quantity += quantity
      self.net += net
      orders.insert(order)
    }

    /// "SKU quantity net orders", by net, then quantity (both descending), then SKU.
    static func ranked(_ totals: [String: Totals]) -> [String] {
      let ordered = totals.sorted { (a: (key: String, value: Totals), b: (key: String, value: Totals)) -> Bool in
        if a.value.net != b.value.net { return a.value.net > b.value.net }
        if a.value.quantity != b.value.quantity { return a.value.quantity > b.value.quantity }
        return a.key < b.key
      }
      return ordered.map { "\($0.key) \($0.value.quantity) \($0.value.net) \($0.value.orders.count)" }
    }
  }

  @Test func productRollupsAnswerAsTheOrdersDo() async throws {
    try await AnalyticsRfmTests.withService { _, events, _ in
      struct Line { let order: Int, sku: String, quantity: Int64, net: Int64 }
      struct Placed { let id: UUID, customer: UUID, at: Date, channel: Rapport_Common_V1_Channel, currency: String, lines: [Line] }
      var random = SeededRandom(seed: 42)
      let now = Date()
      let customers = (0..<30).map { _ in UUID() }
      var orders: [Placed] = []
      for n in 0..<240 {
        let at = now.addingTimeInterval(-Double(random.next() % 8_640_000))
        let skus = ["TEA", "MUG", "PEN", "CUP", "POT", "BAG"]
        var lines = (0..<(1 + Int(random.next() % 3))).map { _ in
          let quantity = Int64(1 + random.next() % 3)
          return Line(order: n, sku: skus[Int(random.next() % 6)], quantity: quantity, net: quantity * Int64(100 * (1 + random.next() % 50)))
        }
        if n % 10 == 0 { lines.append(lines[0]) }
        orders.append(Placed(
          id: UUID(), customer: customers[Int(random.next() % 30)], at: at, channel: n % 3 == 0 ? .store : .web,
          currency: n % 11 == 0 ? "GBP" : "EUR", lines: lines))
      }
      let cancelled = Set(orders.indices.filter { $0 % 8 == 3 })
      for order in orders {
        _ = try await events.apply("order", .orderPlaced(.with {
          $0.orderID = order.id.uuidString
          $0.customerID = order.customer.uuidString
          $0.channel = order.channel
          $0.placedAt = .init(date: order.at)
          $0.total = .money(order.lines.reduce(0) { $0 + $1.net }, order.currency)
          $0.lines = order.lines.map { line in
            .with {
              $0.sku = line.sku
              $0.title = "\(line.sku) title"
              $0.quantity = line.quantity
              $0.unitPriceMinor = line.net / line.quantity
            }
          }
        }))
      }
      // Cancelled in runs of 4 (one set of statements each).
      let cancelledInOrder = cancelled.sorted()
      for start in stride(from: 0, to: cancelledInOrder.count, by: 4) {
        _ = try await events.apply(
          "order", all: cancelledInOrder[start..<min(start + 4, cancelledInOrder.count)].map { index in
            .orderCancelled(.with { $0.orderID = orders[index].id.uuidString })
          })
      }
      let store = events.store
      /// The start of the UTC month `days` days from now.
      func monthStart(_ days: Double) -> Date {
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        return utc.dateInterval(of: .month, for: now.addingTimeInterval(days * 86_400))!.start
      }
      let ranges: [(Date, Date, Rapport_Common_V1_Channel)] = [
        (now.addingTimeInterval(-101 * 86_400), now.addingTimeInterval(1), .unspecified),
        (now.addingTimeInterval(-95 * 86_400 + 11_111), now.addingTimeInterval(-7_200), .web),
        (now.addingTimeInterval(-40 * 86_400 - 3_333), now.addingTimeInterval(-2 * 86_400), .unspecified),
        (now.addingTimeInterval(-10 * 86_400), now.addingTimeInterval(-9.5 * 86_400), .store),
        // Months read whole less their days outside the range, and days whole less their hours, at both ends.
        (monthStart(-60).addingTimeInterval(2 * 86_400 + 5 * 3_600), monthStart(-30).addingTimeInterval(26 * 86_400 + 22 * 3_600), .unspecified),
        (monthStart(-60).addingTimeInterval(2 * 86_400 + 5 * 3_600), now.addingTimeInterval(86_400), .unspecified),
      ]
      var compared = 0
      for (from, to, channel) in ranges {
        var expected: [String: Totals] = [:]
        for (index, order) in orders.enumerated()
        where !cancelled.contains(index) && order.currency == "EUR" && order.at >= from && order.at < to
          && (channel == .unspecified || order.channel == channel)
        {
          for line in order.lines { expected[line.sku, default: Totals()].add(line.quantity, line.net, order: index) }
        }
        let sorted: [String] = Totals.ranked(expected)
        let range = AnalyticsStore.SalesRange(from: from, to: to, currency: "EUR", channel: channel.rawValue)
        let rolled = try await store.topProducts(range, limit: 50).map { "\($0.sku) \($0.quantity) \($0.netRevenue.amountMinor) \($0.orders)" }
        let read = try await store.topProducts(range, limit: 50, customers: customers).map {
          "\($0.sku) \($0.quantity) \($0.netRevenue.amountMinor) \($0.orders)"
        }
        #expect(rolled == sorted && read == sorted, "\(from) ..< \(to)")
        compared += rolled.isEmpty ? 0 : 1
      }
      #expect(compared == ranges.count)
      let cut = AnalyticsStore.RollupCover(from: ranges[4].0, to: ranges[4].1)
      #expect(cut.months.lowerBound < cut.days.lowerBound && cut.days.upperBound < cut.months.upperBound)
      #expect(!cut.less.isEmpty && !cut.lessAfter.isEmpty)

      // A customer whose first order is cancelled is new at their next order, returning after it.
      let late = UUID(), first = UUID()
      let day = { (d: Double) in now.addingTimeInterval(-d * 86_400) }
      for (id, at) in [(first, day(30)), (UUID(), day(20)), (UUID(), day(10))] {
        _ = try await events.apply("order", .orderPlaced(.with {
          $0.orderID = id.uuidString
          $0.customerID = late.uuidString
          $0.placedAt = .init(date: at)
          $0.total = .money(1_000, "JPY")
        }))
      }
      _ = try await events.apply("order", .orderCancelled(.with { $0.orderID = first.uuidString }))
      let summary = try await store.salesSummary(
        .init(from: day(25), to: day(15), currency: "JPY", channel: 0), unit: "day", timeZone: "UTC")
      #expect((summary.total.orders, summary.total.newCustomers, summary.total.returningCustomers) == (1, 1, 0))
      let later = try await store.salesSummary(
        .init(from: day(15), to: day(5), currency: "JPY", channel: 0), unit: "day", timeZone: "UTC")
      #expect((later.total.orders, later.total.newCustomers, later.total.returningCustomers) == (1, 0, 1))
    }
  }

  /// The kept aggregates answer as the orders do — cohorts, and sales summaries by day, week and month,
  /// in kept zones and in zones derived from UTC's rows, per channel and currency, for ranges cut mid-period, whole, ending after now and in the past —
  /// after each kind of change: runs of placements for many customers at once, history placed after
  /// newer orders, cancellations (of first orders too), refunds, a merge of two customers. A product
  /// whose only order is cancelled leaves the product rollups.
  @Test func keptAggregatesAnswerAsTheOrdersDo() async throws {
    try await AnalyticsRfmTests.withService(reportTimeZones: ["Europe/Paris"]) { _, events, database in
      var random = SeededRandom(seed: 7)
      let now = Date()
      let customers = (0..<40).map { _ in UUID() }
      let store = events.store
      // Kept in the reporting zone from the start (as the service does at start), in a zone with a
      // half-hour offset from the middle of the history on.
      let (paris, kolkata) = (try #require(KeptZone("Europe/Paris")), try #require(KeptZone("Asia/Kolkata")))
      try await store.keepZones([paris])
      #expect(try await store.keptZone("Europe/Paris") == paris)
      #expect(try await store.keptZone("Asia/Kolkata") == nil)
      var zones = ["UTC", "Europe/Paris"]
      let (from, to) = (now.addingTimeInterval(-500 * 86_400), now.addingTimeInterval(86_400))
      let ranges: [(Date, Date)] = [
        (now.addingTimeInterval(-365 * 86_400), now.addingTimeInterval(86_400)),
        (now.addingTimeInterval(-90 * 86_400 - 5_000), now.addingTimeInterval(-3 * 86_400)),
        (now.addingTimeInterval(-30 * 86_400), now),
      ]
      // Zones not kept, derived from UTC's rows: summer time, offsets of 5:45, +14 and −11 hours, and the
      // zone dropped below.
      let derivedZones = ["America/New_York", "Asia/Kathmandu", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Asia/Kolkata"]
      func check(_ step: String) async throws {
        for zone in zones + derivedZones.filter({ !zones.contains($0) }) {
          let kept = try await store.cohorts(from: from, to: to, timeZone: zone, now: now)
          let read = try await store.cohorts(from: from, to: to, timeZone: zone, now: now, kept: false)
          #expect(kept == read, "\(step) \(zone)")
          #expect(!kept.isEmpty, "\(step) \(zone)")
          for (start, end) in ranges {
            // Periods in a zone whose clocks are whole hours from UTC's are derived from the sales hours.
            if let derived = KeptZone(zone), !zones.contains(zone) {
              for unit in ["day", "week", "month"] {
                let range = AnalyticsStore.SalesRange(from: start, to: end, currency: "EUR", channel: 0)
                let hourly = try await store.hourDerivedPeriods(range, unit: unit, zone: derived, base: .utc)
                #expect((hourly != nil) == !["Asia/Kathmandu", "Asia/Kolkata"].contains(zone), "\(step) \(zone) \(unit)")
              }
            }
            for unit in ["day", "week", "month"] {
              for (currency, channel) in [("EUR", 0), ("EUR", Rapport_Common_V1_Channel.store.rawValue), ("GBP", 0)] {
                let range = AnalyticsStore.SalesRange(from: start, to: end, currency: currency, channel: channel)
                let fast = try await store.salesSummary(range, unit: unit, timeZone: zone, now: now)
                let slow = try await store.salesSummary(range, unit: unit, timeZone: zone, now: now, kept: false)
                #expect(
                  fast.periods == slow.periods && fast.total == slow.total,
                  "\(step) \(zone): \(unit) \(currency) \(channel) \(start)..<\(end)")
              }
            }
          }
        }
      }
      // The kept rows of each zone (kept in Swift, change by change, or built from the orders) equal
      // what the SQL computes from all orders at once; rows that fell to zero aside.
      func checkRows(_ step: String) async throws {
        #expect(
          try await rows("SELECT concat_ws(' ', currency, channel, kind, day, customers) FROM analytics.scope_days WHERE customers <> 0 ORDER BY 1")
            == rows("SELECT concat_ws(' ', a, b, c, d, e) FROM (\(AnalyticsStore.scopeDaysSQL)) x(a, b, c, d, e) ORDER BY 1"), "\(step)")
        #expect(
          try await rows(
            "SELECT concat_ws(' ', currency, channel, hour, orders, net_minor, back, ahead) FROM analytics.sales_hours WHERE orders <> 0 ORDER BY 1")
            == rows("SELECT concat_ws(' ', a, b, c, d, e, f, g) FROM (\(AnalyticsStore.salesHoursSQL)) x(a, b, c, d, e, f, g) ORDER BY 1"),
          "\(step) sales hours")
        #expect(
          try await rows(
            "SELECT concat_ws(' ', currency, channel, hour, kind, gap, customers) FROM analytics.first_hours WHERE customers <> 0 ORDER BY 1")
            == rows("SELECT concat_ws(' ', a, b, c, d, e, f) FROM (\(AnalyticsStore.firstHoursSQL)) x(a, b, c, d, e, f) ORDER BY 1"),
          "\(step) first hours")
        #expect(
          try await rows(
            "SELECT concat_ws(' ', hour, cohort, back, ahead) FROM analytics.cohort_hours WHERE back[1] <> 0 OR ahead[1] <> 0 ORDER BY 1")
            == rows(
              "SELECT concat_ws(' ', a, b, c, d) FROM (\(AnalyticsStore.cohortHoursSQL)) x(a, b, c, d) WHERE c[1] <> 0 OR d[1] <> 0 ORDER BY 1"),
          "\(step) cohort hours")
        for zone in zones.compactMap(KeptZone.init) {
          let (kept, computed) = try await Self.keptRows(zone, database)
          #expect(kept == computed, "\(step) \(zone.identifier)")
        }
      }
      func order(_ id: UUID, _ customer: UUID, daysAgo: Double, n: Int = 0) -> Rapport_Events_V1_Event.OneOf_Payload {
        .orderPlaced(.with {
          $0.orderID = id.uuidString
          $0.customerID = customer.uuidString
          $0.placedAt = .init(date: now.addingTimeInterval(-daysAgo * 86_400))
          $0.channel = n % 3 == 0 ? .store : .web
          $0.total = .money(Int64(1_000 + n * 7), n % 5 == 0 ? "GBP" : "EUR")
          $0.lines = [
            .with { $0.sku = ["TEA", "MUG", "POT", "CUP"][n % 4]; $0.quantity = Int64(1 + n % 3); $0.unitPriceMinor = Int64(1_000 + n * 7) },
            .with { $0.sku = "TEA"; $0.quantity = 1; $0.unitPriceMinor = 200 },
          ]
        })
      }
      // Top products per RFM segment from the kept segments equal the ones of every customer scored at
      // `at` (AnalyticsStore+SegmentSales), for every segment.
      func checkSegments(_ step: String, at: Date) async throws {
        #expect(try await store.segmentSalesReady(now: at), "\(step)")
        var nonEmpty = 0
        for segment in Rapport_Analytics_V1_RfmSegment.allCases where segment != .unspecified {
          for (start, end) in ranges + [(at.addingTimeInterval(-500 * 86_400), at.addingTimeInterval(86_400))] {
            for (currency, channel) in [("EUR", 0), ("EUR", Rapport_Common_V1_Channel.store.rawValue), ("GBP", 0)] {
              let range = AnalyticsStore.SalesRange(from: start, to: end, currency: currency, channel: channel)
              let kept = try await store.topProducts(range, limit: 100, segment: segment.rawValue, now: at)
              let scored = try await store.topProducts(
                range, limit: 100, customers: try await store.customers(in: segment, now: at), now: at)
              #expect(kept == scored, "\(step): \(segment) \(currency) \(channel) \(start)..<\(end)")
              if !kept.isEmpty { nonEmpty += 1 }
            }
          }
        }
        #expect(nonEmpty > 20, "\(step)")
        // The kept rollups are the orders' lines of each kept member, rows that fell to zero aside.
        #expect(
          try await rows(
            "SELECT concat_ws(' ', segment, grain, period, currency, channel, sku, quantity, net_minor, orders) FROM analytics.rfm_segment_sales WHERE orders <> 0 ORDER BY 1")
            == rows(
              """
              SELECT concat_ws(' ', a, b, c, d, e, f, g, h, i) FROM (\(AnalyticsStore.productSalesSQL(
                from: "(SELECT m.segment, o.order_id, o.placed_at, o.currency, o.channel, l.sku, l.quantity, l.net_minor FROM analytics.orders o JOIN analytics.order_lines l USING (order_id) JOIN analytics.rfm_members m USING (customer_id) WHERE NOT o.cancelled)",
                by: ["segment"]))) x(a, b, c, d, e, f, g, h, i) ORDER BY 1
              """), "\(step)")
      }
      func rows(_ sql: String) async throws -> [String] { try await TestDatabase.column(sql, on: database) }
      // Newer orders first, in runs of 10 (each run one statement), then older history.
      var placed: [(UUID, UUID)] = []
      for days in [[0.0, 200], [200.0, 420]] {
        var run: [Rapport_Events_V1_Event.OneOf_Payload] = []
        for _ in 0..<120 {
          let id = UUID(), customer = customers[Int(random.next() % 40)]
          placed.append((id, customer))
          run.append(order(id, customer, daysAgo: days[0] + Double(random.next() % UInt64((days[1] - days[0]) * 24)) / 24, n: placed.count - 1))
          if run.count == 10 {
            try await events.apply("order", all: run)
            run = []
          }
        }
        try await check("placed \(days)")
        if days[0] == 0 {
          // Edges over the newer orders: every customer is scored; older history then moves them.
          try await store.computeRfmEdges(now: now)
          #expect(try await count("analytics.rfm_members", database) > 10)
        }
        try await checkSegments("placed \(days)", at: now)
      }
      // Orders hours apart (what days in a zone not kept are derived from, by the hours between a
      // customer's orders): of customers with orders (placed from a window of theirs) and of new ones
      // (whose first order in GBP or in a channel comes hours after their first), across midnights.
      var close: [Rapport_Events_V1_Event.OneOf_Payload] = []
      for k in 0..<24 {
        let customer = k < 16 ? customers[k] : UUID()
        let start = 4 + Double(k * 11 % 300) + Double(k % 5) / 24
        for step in 0..<4 {
          let id = UUID()
          placed.append((id, customer))
          close.append(order(id, customer, daysAgo: start - Double(step * (6 + k % 20)) / 24, n: placed.count - 1))
        }
        if close.count >= 12 {
          try await events.apply("order", all: close)
          close = []
        }
      }
      // A placement is kept from a window of the customer's orders (their week and month, and more):
      // one at 01:00 on a Monday that starts a month reaches back to an order 37 hours earlier.
      let monday = try #require(
        (10..<1_000).lazy.map { UTCPeriod.starts(of: now.addingTimeInterval(-Double($0) * 86_400)) }.first { $0[1] == $0[2] }?[1])
      let early = UUID()
      for hours in [-37.0, 1] {
        let id = UUID()
        placed.append((id, early))
        let at = monday.addingTimeInterval(hours * 3_600)
        _ = try await events.apply("order", order(id, early, daysAgo: now.timeIntervalSince(at) / 86_400, n: 1))
      }
      // New customers whose first order (in EUR) and first in GBP straddle a New York day's end or a UTC
      // day's: first in the sliver, first in GBP just past the other day's end; and first order in both
      // days, first in GBP in the sliver.
      let utcDay = UTCPeriod.starts(of: now.addingTimeInterval(-60 * 86_400))[0]
      let newYorkEnd = utcDay.addingTimeInterval(86_400 - Double(try #require(TimeZone(identifier: "America/New_York")).secondsFromGMT(for: utcDay)))
      var straddling: [Rapport_Events_V1_Event.OneOf_Payload] = []
      for (first, inGBP) in [
        (newYorkEnd.addingTimeInterval(-5_400), newYorkEnd.addingTimeInterval(600)), (utcDay.addingTimeInterval(3_600), utcDay.addingTimeInterval(87_000)),
        (utcDay.addingTimeInterval(43_200), utcDay.addingTimeInterval(93_600)),
      ] {
        let customer = UUID()
        for (at, n) in [(first, 1), (inGBP, 5)] {
          let id = UUID()
          placed.append((id, customer))
          straddling.append(order(id, customer, daysAgo: now.timeIntervalSince(at) / 86_400, n: n))
        }
      }
      // New York's weeks and months from UTC's: a customer with an order in the hour a UTC week (month)
      // starts, and the next one in the hour before New York's week (month) ends, or in the hour it ends.
      for utcStart in [UTCPeriod.starts(of: now.addingTimeInterval(-100 * 86_400))[1], UTCPeriod.starts(of: now.addingTimeInterval(-100 * 86_400))[2]] {
        let utcEnd = utcStart == UTCPeriod.starts(of: utcStart)[1]
          ? utcStart.addingTimeInterval(7 * 86_400) : UTCPeriod.starts(of: utcStart.addingTimeInterval(32 * 86_400))[2]
        let newYorkEnd = utcEnd.addingTimeInterval(-Double(try #require(TimeZone(identifier: "America/New_York")).secondsFromGMT(for: utcEnd)))
        for next in [utcEnd.addingTimeInterval(9_000), newYorkEnd.addingTimeInterval(-1_800), newYorkEnd.addingTimeInterval(1_800)] {
          let customer = UUID()
          for at in [utcStart.addingTimeInterval(1_800), next] {
            let id = UUID()
            placed.append((id, customer))
            straddling.append(order(id, customer, daysAgo: now.timeIntervalSince(at) / 86_400, n: 1))
          }
        }
      }
      try await events.apply("order", all: straddling)
      #expect(try await count("analytics.sales_hours WHERE back[1] < orders", database) > 5)
      #expect(try await count("analytics.sales_hours WHERE back[1] > back[\(SalesHour.gaps.count)]", database) > 5)
      #expect(try await count("analytics.first_hours WHERE gap > 0", database) > 2)
      try await check("placed hours apart")
      try await checkRows("placed hours apart")
      // Cancellations in runs of about 5 (each run one set of statements), among them customers' first
      // orders; some runs place an order of the same customer and cancel it too, or place one after a
      // cancellation; an order cancelled again changes nothing.
      var outcomes: [Rapport_Events_V1_Event.OneOf_Payload] = []
      func cancellation(_ id: UUID) -> Rapport_Events_V1_Event.OneOf_Payload { .orderCancelled(.with { $0.orderID = id.uuidString }) }
      for (index, (id, customer)) in placed.enumerated() where index % 7 == 0 {
        outcomes.append(cancellation(id))
        if index % 3 == 0 {
          let fresh = UUID()
          outcomes.append(order(fresh, customer, daysAgo: Double(index % 300) + 0.5, n: index))
          if index % 2 == 0 { outcomes.append(cancellation(fresh)) } else { placed.append((fresh, customer)) }
        }
        if outcomes.count >= 5 {
          try await events.apply("order", all: outcomes)
          outcomes = []
        }
      }
      try await events.apply("order", all: outcomes + [cancellation(placed[0].0)])
      try await check("cancelled")
      try await checkRows("cancelled")
      try await checkSegments("cancelled", at: now)
      // Refunds: part of an order, then more of it, in the same run or the next one.
      outcomes = []
      for (index, (id, _)) in placed.enumerated() where index % 9 == 1 {
        for amount in [300, 700] as [Int64] {
          outcomes.append(.orderRefunded(.with {
            $0.orderID = id.uuidString
            $0.amountRefunded = .money(amount, index % 5 == 0 ? "GBP" : "EUR")
          }))
          if outcomes.count == 5 {
            try await events.apply("order", all: outcomes)
            outcomes = []
          }
        }
      }
      try await events.apply("order", all: outcomes)
      try await check("refunded")
      try await checkRows("refunded")
      try await checkSegments("refunded", at: now)
      // Two customers merged: their months combine, their cohort is the earlier one.
      _ = try await events.apply(
        "customer", .customerMerged(.with { $0.survivorID = customers[0].uuidString; $0.duplicateID = customers[1].uuidString }))
      try await check("merged")
      try await checkSegments("merged", at: now)
      // A zone kept from here on: its rows are computed from the orders, then kept change by change.
      try await store.keepZones([paris, kolkata])
      #expect(try await store.keptZone("Asia/Kolkata") == kolkata)
      zones.append("Asia/Kolkata")
      try await check("Asia/Kolkata kept")
      try await checkRows("Asia/Kolkata kept")
      // An order placed for the merged-away id counts for the survivor.
      _ = try await events.apply("order", order(UUID(), customers[1], daysAgo: 450))
      try await check("placed for a merged id")
      try await checkSegments("placed for a merged id", at: now)
      #expect(try await count("analytics.cohort_cells", database) > 10)
      #expect(try await count("analytics.sales_periods", database) > 100)
      // Time passes: customers whose recency crosses an edge are scored again before the read.
      let later = now.addingTimeInterval(45 * 86_400)
      let expired = try await count("analytics.rfm_members WHERE valid_until <= '\(later.formatted(.iso8601))'", database)
      #expect(expired > 0)
      try await checkSegments("45 days later", at: later)
      #expect(try await count("analytics.rfm_members WHERE valid_until <= '\(later.formatted(.iso8601))'", database) == 0)
      try await checkRows("end")
      // A zone no longer wanted is dropped; reads in it are derived from UTC's rows again.
      try await store.keepZones([paris])
      #expect(try await store.keptZone("Asia/Kolkata") == nil)
      #expect(try await count("analytics.sales_periods WHERE zone = 'Asia/Kolkata'", database) == 0)
      #expect(try await count("analytics.cohort_cells WHERE zone = 'Asia/Kolkata'", database) == 0)
      zones.removeLast()
      try await check("Asia/Kolkata dropped")
      #expect(
        try await rows(
          "SELECT concat_ws(' ', customer_id, currency, channel, first_kept_at, last_at, orders, net_minor) FROM analytics.customer_scopes ORDER BY 1")
          == rows("SELECT concat_ws(' ', a, b, c, d, e, f, g) FROM (\(AnalyticsStore.customerScopesSQL(where: "true"))) x(a, b, c, d, e, f, g) ORDER BY 1"))

      // A product sold once, then cancelled, leaves the rollups (day and month rows, of its channel and
      // of all channels).
      let single = UUID()
      _ = try await events.apply("order", .orderPlaced(.with {
        $0.orderID = single.uuidString
        $0.customerID = customers[2].uuidString
        $0.placedAt = .init(date: now.addingTimeInterval(-3 * 86_400))
        $0.channel = .web
        $0.total = .money(500, "EUR")
        $0.lines = [.with { $0.sku = "ONCE"; $0.quantity = 1; $0.unitPriceMinor = 500 }]
      }))
      #expect(try await count("analytics.product_sales WHERE sku = 'ONCE'", database) == 4)
      _ = try await events.apply("order", .orderCancelled(.with { $0.orderID = single.uuidString }))
      #expect(try await count("analytics.product_sales WHERE sku = 'ONCE'", database) == 0)
    }
  }

  /// A kept zone's sales periods and cohort cells as kept (rows that fell to zero aside), and as the SQL
  /// computes them from all orders at once.
  static func keptRows(_ zone: KeptZone, _ database: DatabaseURL) async throws -> (kept: [String], computed: [String]) {
    func rows(_ sql: String) async throws -> [String] { try await TestDatabase.column(sql, on: database) }
    let kept = try await rows(
      "SELECT concat_ws(' ', unit, period, currency, channel, orders, net_minor, active, new) FROM analytics.sales_periods WHERE zone = \(zone.sqlLiteral) AND orders > 0 ORDER BY 1")
      + rows("SELECT concat_ws(' ', cohort, month, customers) FROM analytics.cohort_cells WHERE zone = \(zone.sqlLiteral) AND customers > 0 ORDER BY 1")
    let computed = try await rows(
      "SELECT concat_ws(' ', a, b, c, d, e, f, g, h) FROM (\(AnalyticsStore.salesPeriodsSQL(where: "true", zone: zone))) x(a, b, c, d, e, f, g, h) ORDER BY 1")
      + rows("SELECT concat_ws(' ', a, b, c) FROM (\(AnalyticsStore.cohortCellsSQL(where: "true", zone: zone))) x(a, b, c) ORDER BY 1")
    return (kept, computed)
  }

  /// A zone reads ask for is learned: kept from then on, built a local month at a time while orders keep
  /// changing — placements, history placed late (in months built and not built yet), cancellations, a
  /// merge, between the months' builds and at the same time as them — and then equal to what the orders
  /// give. At most `limit` zones are learned; one no read asked for in 30 days is dropped; a learned zone
  /// configured later is kept as configured; a read whose zone is dropped under it reads again.
  @Test func zonesReadsAskForAreLearnedAMonthAtATimeWhileOrdersChange() async throws {
    // No service: its worker would build the zones too.
    try await AnalyticsRfmTests.withHarness { events, database in
      let store = events.store
      var random = SeededRandom(seed: 11)
      let now = Date()
      let customers = (0..<30).map { _ in UUID() }
      var placed: [UUID] = []
      func run(_ count: Int, daysAgo: ClosedRange<Double>) -> [Rapport_Events_V1_Event.OneOf_Payload] {
        (0..<count).map { _ in
          let id = UUID()
          placed.append(id)
          let n = placed.count
          let days = daysAgo.lowerBound + Double(random.next() % 10_000) / 10_000 * (daysAgo.upperBound - daysAgo.lowerBound)
          return .orderPlaced(.with {
            $0.orderID = id.uuidString
            $0.customerID = customers[Int(random.next() % 30)].uuidString
            $0.placedAt = .init(date: now.addingTimeInterval(-days * 86_400))
            $0.channel = n % 3 == 0 ? .store : .web
            $0.total = .money(Int64(1_000 + n), n % 4 == 0 ? "GBP" : "EUR")
            $0.lines = [.with { $0.sku = "TEA"; $0.quantity = 1; $0.unitPriceMinor = Int64(1_000 + n) }]
          })
        }
      }
      // The oldest order's week starts in the month before (Wednesday 1 October 2025 in both zones).
      _ = try await events.apply("order", .orderPlaced(.with {
        $0.orderID = UUID().uuidString
        $0.customerID = customers[29].uuidString
        $0.placedAt = Self.stamp("2025-10-01T12:00:00Z")
        $0.channel = .web
        $0.total = .money(900, "EUR")
        $0.lines = [.with { $0.sku = "TEA"; $0.quantity = 1; $0.unitPriceMinor = 900 }]
      }))
      _ = try await events.apply("order", all: run(150, daysAgo: 0...400))
      let (newYork, kathmandu, sydney) = (
        try #require(KeptZone("America/New_York")), try #require(KeptZone("Asia/Kathmandu")), try #require(KeptZone("Australia/Sydney"))
      )
      let range = AnalyticsStore.SalesRange(from: now.addingTimeInterval(-450 * 86_400), to: now.addingTimeInterval(86_400), currency: "EUR", channel: 0)
      // Reads in three zones; two are learned (at most `limit`), none is ready yet.
      for zone in [newYork, kathmandu, sydney] { _ = try await store.salesSummary(range, unit: "day", timeZone: zone.identifier, now: now) }
      try await store.learnAskedZones(limit: 2, now: now)
      var rows = try await store.zoneRows()
      #expect(rows.map(\.zone.identifier) == ["UTC", "America/New_York", "Asia/Kathmandu"])
      #expect(rows.map(\.learned) == [false, true, true])
      #expect(rows.map(\.ready) == [true, false, false])
      #expect(try await store.keptZone("America/New_York") == nil)
      // New York is built a month at a time; orders change between the months.
      var months = 0
      while try await store.buildMonth(of: newYork, now: now) {
        months += 1
        _ = try await events.apply("order", all: run(3, daysAgo: 0...2) + run(3, daysAgo: 0...420))
        if months == 4 {
          for id in placed.prefix(60) where random.next() % 4 == 0 {
            _ = try await events.apply("order", .orderCancelled(.with { $0.orderID = id.uuidString }))
          }
        }
        if months == 8 {
          _ = try await events.apply(
            "customer", .customerMerged(.with { $0.survivorID = customers[0].uuidString; $0.duplicateID = customers[1].uuidString }))
        }
      }
      #expect(months >= 13)
      #expect(try await store.keptZone("America/New_York") == newYork)
      // Kathmandu is built while orders arrive at the same time.
      let batches = (0..<20).map { _ in run(2, daysAgo: 0...1) + run(2, daysAgo: 0...420) }
      try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await store.keepLearnedZones(limit: 2, now: now) }
        group.addTask {
          for batch in batches { _ = try await events.apply("order", all: batch) }
        }
        try await group.waitForAll()
      }
      #expect(try await store.keptZone("Asia/Kathmandu") == kathmandu)
      for zone in [newYork, kathmandu] {
        let (kept, computed) = try await Self.keptRows(zone, database)
        #expect(kept == computed, "\(zone.identifier)")
        #expect(kept.count > 100, "\(zone.identifier)")
        for unit in ["day", "week", "month"] {
          let fast = try await store.salesSummary(range, unit: unit, timeZone: zone.identifier, now: now)
          let slow = try await store.salesSummary(range, unit: unit, timeZone: zone.identifier, now: now, kept: false)
          #expect(fast.periods == slow.periods && fast.total == slow.total, "\(zone.identifier) \(unit)")
        }
        #expect(
          try await store.cohorts(from: range.from, to: range.to, timeZone: zone.identifier, now: now)
            == store.cohorts(from: range.from, to: range.to, timeZone: zone.identifier, now: now, kept: false), "\(zone.identifier)")
      }
      // New York configured: kept as configured. Kathmandu unread for 31 days: dropped; Sydney, asked
      // again, takes its place.
      try await store.keepZones([newYork])
      try await store.learnAskedZones(limit: 2, now: now)
      _ = try await store.cohorts(from: range.from, to: range.to, timeZone: sydney.identifier, now: now)
      try await store.learnAskedZones(limit: 1, now: now.addingTimeInterval(31 * 86_400))
      rows = try await store.zoneRows()
      #expect(rows.map(\.zone.identifier) == ["UTC", "America/New_York", "Australia/Sydney"])
      #expect(rows.map(\.learned) == [false, false, true])
      #expect(try await count("analytics.sales_periods WHERE zone = 'Asia/Kathmandu'", database) == 0)
      #expect(try await count("analytics.cohort_cells WHERE zone = 'Asia/Kathmandu'", database) == 0)
      // With no room, a zone asked for is not learned.
      _ = try await store.cohorts(from: range.from, to: range.to, timeZone: kathmandu.identifier, now: now)
      try await store.learnAskedZones(limit: 1, now: now.addingTimeInterval(31 * 86_400))
      #expect(try await store.zoneRows().map(\.zone.identifier) == ["UTC", "America/New_York", "Australia/Sydney"])
      // A read whose kept zone is dropped under it (its rows deleted) reads again, from the base chosen
      // anew: UTC's, the nearest to Sydney's clocks.
      while try await store.buildMonth(of: sydney, now: now) {}
      var bases: [String] = []
      let answered = try await store.withDerivationBase(for: sydney, from: range.from, to: range.to) { base in
        bases.append(base.identifier)
        if bases.count == 1 { try await store.learnAskedZones(limit: 0, now: now) }
        return base.identifier
      }
      #expect(bases == ["Australia/Sydney", "UTC"])
      #expect(answered == "UTC")
      #expect(try await store.zoneRows().map(\.zone.identifier) == ["UTC", "America/New_York"])
    }
  }

  /// A placement whose local month is not its UTC month — the first hours of a month in a zone ahead of
  /// UTC, the last hours of one in a zone behind it — counts its customer once in that local month when
  /// the customer already ordered later in it: the orders read to keep a placement cover the local
  /// periods of every kept zone, not only UTC's.
  @Test(arguments: [
    ("Asia/Kathmandu", "2026-01-31T20:00:00Z", "2026-02-15T12:00:00Z", "2026-01-31 18:15:00+00"),
    ("America/New_York", "2026-03-01T02:00:00Z", "2026-02-10T12:00:00Z", "2026-02-01 05:00:00+00"),
  ])
  func aPlacementAtALocalMonthsEdgeCountsItsCustomerOnceInThatMonth(
    _ zoneName: String, _ edge: String, _ within: String, _ localMonth: String
  ) async throws {
    try await AnalyticsRfmTests.withHarness { events, database in
      let zone = try #require(KeptZone(zoneName))
      try await events.store.keepZones([zone])
      let customer = UUID()
      for at in ["2026-01-10T12:00:00Z", within, edge] {
        _ = try await events.apply("order", Self.teaOrder(customer, at: at))
      }
      let (kept, computed) = try await Self.keptRows(zone, database)
      #expect(kept == computed)
      // Two orders, one customer active, not new.
      #expect(kept.contains("month \(localMonth) EUR 0 2 2000 1 0"))
      // Rows kept wrong before the fix (a customer counted twice) are repaired by migration 22 and the
      // reporting zone computed again at the next start.
      _ = try await TestDatabase.column(
        "UPDATE analytics.sales_periods SET active = active + 1 WHERE zone = \(zone.sqlLiteral) AND unit = 'month' RETURNING ''",
        on: database)
      #expect(try await Self.keptRows(zone, database).kept != computed)
      let repair = try #require(AnalyticsMigrations.all.first { $0.version == 22 })
      for statement in repair.statements { _ = try await TestDatabase.column("\(statement) RETURNING ''", on: database) }
      #expect(try await events.store.keptZone(zoneName) == nil)
      try await events.store.keepZones([zone])
      #expect(try await Self.keptRows(zone, database) == (kept, computed))
    }
  }

  /// An order of one tea at 10 EUR on the web, placed at `at`.
  static func teaOrder(_ customer: UUID, at: String) -> Rapport_Events_V1_Event.OneOf_Payload {
    .orderPlaced(.with {
      $0.orderID = UUID().uuidString
      $0.customerID = customer.uuidString
      $0.placedAt = Self.stamp(at)
      $0.channel = .web
      $0.total = .money(1_000, "EUR")
      $0.lines = [.with { $0.sku = "TEA"; $0.quantity = 1; $0.unitPriceMinor = 1_000 }]
    })
  }

  /// Havana's clocks pass midnight twice when summer time ends (2 November 2025, 01:00 back to 00:00),
  /// and PostgreSQL reads that midnight as the later instant (05:00 UTC): kept, Havana's rows are those
  /// SQL computes. Migration 24 drops the rows of kept zones with such a midnight within the orders'
  /// span (Havana's, not Paris's, whose clocks change at 03:00), and they are computed again the same.
  @Test func aMidnightPassedTwiceIsCutAsPostgreSQLCutsIt() async throws {
    try await AnalyticsRfmTests.withHarness { events, database in
      let havana = try #require(KeptZone("America/Havana")), paris = try #require(KeptZone("Europe/Paris"))
      try await events.store.keepZones([havana, paris])
      let customer = UUID()
      for at in ["2025-10-20T12:00:00Z", "2025-11-02T04:30:00Z", "2025-11-02T05:30:00Z", "2025-11-03T12:00:00Z"] {
        _ = try await events.apply("order", Self.teaOrder(customer, at: at))
      }
      let (kept, computed) = try await Self.keptRows(havana, database)
      #expect(kept == computed)
      // 04:30 and 05:30 UTC are both 2 November, 00:30 there: the day PostgreSQL starts at 05:00.
      #expect(kept.contains("day 2025-11-02 05:00:00+00 EUR 0 2 2000 1 0"), "\(kept)")
      let parisRows = try await Self.keptRows(paris, database)
      let repair = try #require(AnalyticsMigrations.all.first { $0.version == 24 })
      for statement in repair.statements { _ = try await TestDatabase.column("\(statement) RETURNING ''", on: database) }
      #expect(try await events.store.keptZone("America/Havana") == nil)
      #expect(try await events.store.keptZone("Europe/Paris") != nil)
      #expect(try await Self.keptRows(paris, database) == parisRows)
      try await events.store.keepZones([havana, paris])
      #expect(try await Self.keptRows(havana, database) == (kept, computed))
    }
  }

  /// Reads in zones that are not kept are derived from the nearest kept zone's rows (UTC or the
  /// reporting zone); the customers whose answer differs are those with orders, or their first order,
  /// between that zone's period start and the zone's. Orders placed on those edges — first orders among
  /// them, in another currency, cancelled — give the same cohorts and summaries as reading the orders, in
  /// zones ahead of UTC and behind it, and in zones nearer the reporting zone.
  @Test func zonesNotKeptAnswerAsTheOrdersDoAtPeriodEdges() async throws {
    try await AnalyticsRfmTests.withService { _, events, _ in
      let store = events.store
      let paris = try #require(KeptZone("Europe/Paris"))
      try await store.keepZones([paris])
      // The base: the zone itself when kept, else the kept zone with the nearest clocks (UTC on a tie).
      let year = (Date().addingTimeInterval(-365 * 86_400), Date())
      for (zone, base) in [
        ("Europe/Paris", "Europe/Paris"), ("Europe/Berlin", "Europe/Paris"), ("Europe/Madrid", "Europe/Paris"),
        ("Africa/Lagos", "Europe/Paris"), ("Atlantic/Reykjavik", "UTC"), ("America/New_York", "UTC"), ("UTC", "UTC"),
      ] {
        #expect(try await store.derivationBase(for: try #require(KeptZone(zone)), from: year.0, to: year.1).identifier == base, "\(zone)")
      }
      var utc = Calendar(identifier: .gregorian)
      utc.timeZone = .gmt
      let now = Date()
      let thisMonth = utc.dateInterval(of: .month, for: now)!.start
      // The starts of the last eight UTC months, and instants around them.
      let edges = (1...8).map { utc.date(byAdding: .month, value: -$0, to: thisMonth)! }
      let offsets: [Double] = [-13, -6, -3, -0.5, 0.5, 3, 6, 13]
      let customers = (0..<16).map { _ in UUID() }
      var placed: [UUID] = []
      var payloads: [Rapport_Events_V1_Event.OneOf_Payload] = []
      for (c, customer) in customers.enumerated() {
        // Customer c's first order lies `offsets[c % 8]` hours from a month's start; later orders lie on
        // other edges and in the middle of months.
        let first = edges[7 - c % 4].addingTimeInterval(offsets[c % 8] * 3_600)
        let times = [first] + (0..<5).map { k in
          let later = edges[(c + k) % (7 - c % 4)]
          return k % 2 == 0 ? later.addingTimeInterval(offsets[(c + k) % 8] * 3_600) : later.addingTimeInterval(15 * 86_400 + Double(c) * 3_600)
        }
        for (k, time) in times.enumerated() where time < now {
          let id = UUID()
          placed.append(id)
          payloads.append(.orderPlaced(.with {
            $0.orderID = id.uuidString
            $0.customerID = customer.uuidString
            $0.placedAt = .init(date: time)
            $0.channel = (c + k) % 3 == 0 ? .store : .web
            $0.total = .money(Int64(1_000 + 10 * c + k), (c + k) % 5 == 4 ? "GBP" : "EUR")
            $0.lines = [.with { $0.sku = "TEA"; $0.quantity = 1; $0.unitPriceMinor = Int64(1_000 + 10 * c + k) }]
          }))
        }
      }
      _ = try await events.apply("order", all: payloads)
      // A few cancelled, first orders among them.
      for (index, id) in placed.enumerated() where index % 7 == 0 {
        _ = try await events.apply("order", .orderCancelled(.with { $0.orderID = id.uuidString }))
      }
      let (from, to) = (edges[7].addingTimeInterval(-40 * 86_400), now.addingTimeInterval(86_400))
      for zone in ["America/New_York", "Asia/Kathmandu", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Berlin", "Europe/London", "Africa/Lagos"] {
        let derived = try await store.cohorts(from: from, to: to, timeZone: zone, now: now)
        let read = try await store.cohorts(from: from, to: to, timeZone: zone, now: now, kept: false)
        #expect(derived == read, "\(zone)")
        #expect(read.count >= 4, "\(zone)")
        for unit in ["day", "week", "month"] {
          for (currency, channel) in [("EUR", 0), ("EUR", Rapport_Common_V1_Channel.store.rawValue), ("GBP", 0)] {
            let range = AnalyticsStore.SalesRange(from: from, to: to, currency: currency, channel: channel)
            let fast = try await store.salesSummary(range, unit: unit, timeZone: zone, now: now)
            let slow = try await store.salesSummary(range, unit: unit, timeZone: zone, now: now, kept: false)
            #expect(fast.periods == slow.periods && fast.total == slow.total, "\(zone) \(unit) \(currency) \(channel)")
          }
        }
      }
      // With the sub-hour zones kept (built in the background, as the service does with
      // `sub-hour-time-zones`): a zone with the clocks of one of them is derived from it, New York still
      // from UTC (a whole number of hours away, not St. John's, nearer but a half hour off), and the kept
      // ones read their own rows.
      try await store.keepZones([paris], building: KeptZone.subHour)
      try await store.keepLearnedZones(limit: 0)
      #expect(try await store.zoneRows().filter(\.ready).count == 2 + KeptZone.subHour.count)
      for (zone, base) in [
        ("America/New_York", "UTC"), ("America/St_Johns", "America/St_Johns"), ("Asia/Colombo", "Asia/Kolkata"),
        ("Australia/Broken_Hill", "Australia/Adelaide"), ("Asia/Kathmandu", "Asia/Kathmandu"), ("Europe/Berlin", "Europe/Paris"),
      ] {
        #expect(try await store.derivationBase(for: try #require(KeptZone(zone)), from: year.0, to: year.1).identifier == base, "\(zone)")
      }
      for zone in ["Asia/Colombo", "Australia/Broken_Hill", "Asia/Kathmandu", "America/St_Johns"] {
        #expect(try await store.cohorts(from: from, to: to, timeZone: zone, now: now) == store.cohorts(from: from, to: to, timeZone: zone, now: now, kept: false), "\(zone)")
        for unit in ["day", "week", "month"] {
          let range = AnalyticsStore.SalesRange(from: from, to: to, currency: "EUR", channel: 0)
          let fast = try await store.salesSummary(range, unit: unit, timeZone: zone, now: now)
          let slow = try await store.salesSummary(range, unit: unit, timeZone: zone, now: now, kept: false)
          #expect(fast.periods == slow.periods && fast.total == slow.total, "\(zone) \(unit)")
        }
      }
    }
  }

  /// Every zone of the tzdata this build has whose clocks were or will be a half or quarter hour off
  /// UTC within a year either side of now has the same clocks as a zone the service keeps with
  /// `sub-hour-time-zones` (`KeptZone.subHour`), so its reads are derived without slivers; a tzdata
  /// update that adds such a clock fails here.
  @Test func everySubHourClockIsKept() throws {
    let now = Date()
    let instants = stride(from: -365.0, through: 365, by: 1).map { now.addingTimeInterval($0 * 86_400) }
    func clocks(_ zone: TimeZone) -> [Int] { instants.map { zone.secondsFromGMT(for: $0) } }
    let kept = try KeptZone.subHour.map { try #require(TimeZone(identifier: $0.identifier)) }.map(clocks)
    var subHour: [String] = []
    for identifier in TimeZone.knownTimeZoneIdentifiers {
      guard let zone = TimeZone(identifier: identifier), case let offsets = clocks(zone), offsets.contains(where: { $0 % 3600 != 0 }) else {
        continue
      }
      subHour.append(identifier)
      #expect(kept.contains(offsets), "\(identifier)")
    }
    // The check saw the zones it is about (Foundation's list spells India's zone Asia/Calcutta).
    #expect(subHour.contains("Asia/Calcutta") && subHour.contains("Asia/Kathmandu") && subHour.contains("America/St_Johns"))
  }

  /// With `sub-hour-time-zones`, the service keeps the sub-hour zones, built in the background until ready.
  @Test func theServiceKeepsTheSubHourZones() async throws {
    try await AnalyticsRfmTests.withService(subHourTimeZones: true) { _, events, _ in
      let deadline = ContinuousClock.now + .seconds(60)
      let wanted = Set([.utc] + KeptZone.subHour)
      while try await Set(events.store.zoneRows().filter(\.ready).map(\.zone)) != wanted, ContinuousClock.now < deadline {
        try await Task.sleep(for: .milliseconds(200))
      }
      #expect(try await Set(events.store.zoneRows().filter(\.ready).map(\.zone)) == wanted)
    }
  }
}
