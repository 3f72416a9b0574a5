import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import SwiftProtobuf
import Synchronization
import Testing

@testable import AnalyticsService

/// Rule segments (docs/ANALYTICS.md, "Rule segments"): the rule language, and membership kept current
/// by events and by time, published as `SegmentMembershipChanged`.
@Suite(.hangLimit) struct AnalyticsSegmentTests {
  @Test func rulesParseIntoTheirMeaning() throws {
    #expect(
      try SegmentRule.parse("spent(EUR, 90) > 20000 and consented(marketing_email)")
        == .all([.compare(.spent("EUR", days: 90), .greater, .number(20_000)), .consented(purpose: .marketingEmail, channel: .unspecified)]))
    #expect(
      try SegmentRule.parse("not (rfm_segment = 'champions' or rfm_segment = \"loyal\") and days_since_last_order >= 90")
        == .all([
          .not(.any([.compare(.rfmSegment, .equal, .text("champions")), .compare(.rfmSegment, .equal, .text("loyal"))])),
          .compare(.daysSinceLastOrder, .greaterOrEqual, .number(90)),
        ]))
    // `and` binds tighter than `or`.
    #expect(
      try SegmentRule.parse("orders > 1 or orders = 0 and clv(usd) < 100.5")
        == .any([
          .compare(.orders, .greater, .number(1)),
          .all([.compare(.orders, .equal, .number(0)), .compare(.clv("USD"), .less, .number(100.5))]),
        ]))
    #expect(try SegmentRule.parse("consented(marketing_sms, mobile)") == .consented(purpose: .marketingSms, channel: .mobile))
    // Tags are lower case; quoted attribute keys keep their case; text, numbers and true/false compare.
    #expect(
      try SegmentRule.parse("tagged('VIP') and attribute(\"Loyalty.tier\") = 'Gold' or attribute(points) > 10 and not attribute(newsletter) = false")
        == .any([
          .all([.tagged("vip"), .compare(.attribute("Loyalty.tier"), .equal, .text("Gold"))]),
          .all([.compare(.attribute("points"), .greater, .number(10)), .not(.compare(.attribute("newsletter"), .equal, .boolean(false)))]),
        ]))
  }

  @Test(arguments: [
    ("orderz > 1", "unknown value: 'orderz' at position 1"),
    ("orders > ", "expected a number or a quoted name at the end (position 10)"),
    ("orders >> 2", "expected a number: '>' at position 9"),
    ("orders > 1 and", "expected a value, 'not' or '(' at the end (position 15)"),
    ("(orders > 1", "expected ')' at the end (position 12)"),
    ("orders > 1 orders < 3", "expected 'and', 'or' or the end: 'orders' at position 12"),
    ("spent(EUR) > 1", "expected ',': ')' at position 10"),
    ("spent(EUR, 0) > 1", "expected a number of days from 1 to 3660: '0' at position 12"),
    ("rfm_segment > 'lost'", "RFM segments compare only with = or !=: '>' at position 13"),
    ("rfm_segment = 'rich'", "expected an RFM segment name (at_risk, cant_lose_them, champions, hibernating, lost, loyal, needs_attention, new, potential_loyalist, promising): 'rich' at position 15"),
    ("consented(newsletter)", "unknown consent purpose (marketing_email, marketing_push, marketing_sms, profiling): 'newsletter' at position 11"),
    ("orders > 'x", "unterminated string: ''x' at position 10"),
    ("orders ~ 1", "unexpected character: '~' at position 8"),
    ("tagged('a b')", "expected a tag (1–64 letters, digits, '-', '_', ':'): 'a b' at position 8"),
    ("attribute(tier) > 'gold'", "text, true and false compare only with = or !=: '>' at position 17"),
    ("attribute(tier) = gold", "expected a number, a quoted text, true or false: 'gold' at position 19"),
    ("attribute('a-b') = 1", "expected an attribute key (1–64 letters, digits, '_', '.'): 'a-b' at position 11"),
  ])
  func aBadRuleNamesTheTokenAndItsPosition(rule: String, message: String) {
    #expect(throws: SegmentRuleError.self) { try SegmentRule.parse(rule) }
    do {
      _ = try SegmentRule.parse(rule)
    } catch {
      #expect("\(error)" == message)
    }
  }

  /// The members of segment `id`, read with ListSegmentMembers.
  static func members(
    of id: String, _ api: Rapport_Analytics_V1_AnalyticsService.Client<HTTP2ClientTransport.Posix>
  ) async throws -> Set<UUID> {
    try await api.listSegmentMembers(.with { $0.segmentID = id }) { response in
      var ids = Set<UUID>()
      for try await member in response.messages { ids.insert(UUID(uuidString: member.customerID)!) }
      return ids
    }
  }

  /// The pages of segment `id`, read with ListSegmentMemberPages.
  static func memberPages(
    of id: String, size: Int32 = 0, _ api: Rapport_Analytics_V1_AnalyticsService.Client<HTTP2ClientTransport.Posix>
  ) async throws -> [[Rapport_Analytics_V1_SegmentMember]] {
    try await api.listSegmentMemberPages(.with { $0.segmentID = id; $0.pageSize = size }) { response in
      var pages: [[Rapport_Analytics_V1_SegmentMember]] = []
      for try await page in response.messages { pages.append(page.members) }
      return pages
    }
  }

  /// ListSegmentMembers streams a segment of several pages (`AnalyticsRPCs.membersPage`) whole: every
  /// member once, in (since, customer) order, though every page ends inside the run of members who
  /// entered together.
  @Test func aSegmentOfSeveralPagesStreamsWholeAndInOrder() async throws {
    try await AnalyticsRfmTests.withService { address, _, database in
      let count = AnalyticsRPCs.membersPage * 2 + 345
      try await Bootstrap.execute(
        "INSERT INTO analytics.customer_metrics (customer_id, as_of) SELECT gen_random_uuid(), now() FROM generate_series(1, \(count))",
        on: database, logger: testLogger("test"))
      try await withClient(to: address) { client in
        let api = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client)
        let everyone = try await api.putSegment(.with { $0.id = "everyone"; $0.rule = "orders >= 0" })
        #expect(everyone.entered == count)
        let streamed = try await api.listSegmentMembers(.with { $0.segmentID = "everyone" }) { response in
          var members: [Rapport_Analytics_V1_SegmentMember] = []
          for try await member in response.messages { members.append(member) }
          return members
        }
        #expect(streamed.count == count && Set(streamed.map(\.customerID)).count == count)
        #expect(Set(streamed.map(\.since)).count == 1)  // entered together: pages break ties by customer
        #expect(zip(streamed, streamed.dropFirst()).allSatisfy { $0.customerID < $1.customerID })
        // The same members in the same order, many per message: full pages but the last, across the
        // service's own pages (count = 2 × 5,000 + 345).
        let pages = try await Self.memberPages(of: "everyone", size: 4_000, api)
        #expect(pages.map(\.count) == [4_000, 4_000, count - 8_000])
        #expect(pages.flatMap { $0 } == streamed)
        let byDefault = try await Self.memberPages(of: "everyone", api)
        #expect(byDefault.map(\.count) == Array(repeating: 1_000, count: count / 1_000) + [count % 1_000])
        #expect(byDefault.flatMap { $0 } == streamed)
        #expect(try await Self.memberPages(of: "everyone", size: 10_000, api).map(\.count) == [10_000, count - 10_000])
      }
    }
  }

  /// Three customers: A spends 30 000 EUR now and consents to marketing e-mail; B spends 5 000 now;
  /// C spent 50 000 200 days ago and consents.
  @Test func membershipFollowsEventsAndTimeAndIsPublished() async throws {
    try await AnalyticsRfmTests.withService { address, events, database in
      let (a, b, c) = (UUID(), UUID(), UUID())
      @Sendable func consent(_ customer: UUID, _ granted: Bool = true) -> Rapport_Events_V1_Event.OneOf_Payload {
        .consentChanged(.with {
          $0.customerID = customer.uuidString
          $0.purpose = .marketingEmail
          $0.granted = granted
        })
      }
      try await events.consume(
        "order", AnalyticsRfmTests.placed(UUID(), a, 30_000, daysAgo: 10), AnalyticsRfmTests.placed(UUID(), b, 5_000, daysAgo: 10),
        AnalyticsRfmTests.placed(UUID(), c, 50_000, daysAgo: 200))
      try await events.consume("customer", consent(a), consent(c))

      try await withClient(to: address) { client in
        let api = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client)
        @Sendable func members(_ id: String) async throws -> Set<UUID> { try await Self.members(of: id, api) }
        let big = try await api.putSegment(.with {
          $0.id = "big-spenders"
          $0.rule = "spent(EUR, 90) > 20000 and consented(marketing_email)"
          $0.description_p = "spent more than 200 EUR in 90 days and consented to marketing e-mail"
        })
        #expect(big.segment.version == 1 && big.entered == 1 && big.segment.memberCount == 1 && big.segment.hasEvaluateTime)
        #expect(try await members("big-spenders") == [a])
        let lapsed = try await api.putSegment(.with {
          $0.id = "lapsed"
          $0.rule = "days_since_last_order > 90"
        })
        #expect(lapsed.entered == 1)
        #expect(try await members("lapsed") == [c])

        // An event moves a customer at once: B spends and consents.
        try await events.consume("order", AnalyticsRfmTests.placed(UUID(), b, 25_000, daysAgo: 1))
        #expect(try await members("big-spenders") == [a])
        try await events.consume("customer", consent(b))
        #expect(try await members("big-spenders") == [a, b])
        // A withdraws consent.
        try await events.consume("customer", consent(a, false))
        #expect(try await members("big-spenders") == [b])

        // Time moves people without an event: 100 days on, A and B lapse and B's spend ages out.
        try await events.store.evaluateAllSegments(customers: nil, now: Date().addingTimeInterval(100 * 86_400))
        #expect(try await members("lapsed") == [a, b, c])
        #expect(try await members("big-spenders") == [])

        // Putting the same rule again is no new version, but recomputes at the real time again: A and B
        // are not lapsed today. A changed rule is version 2 and recomputes.
        let again = try await api.putSegment(.with { $0.id = "lapsed"; $0.rule = "days_since_last_order > 90" })
        #expect(again.segment.version == 1 && again.left == 2)
        let narrowed = try await api.putSegment(.with {
          $0.id = "lapsed"
          $0.rule = "days_since_last_order > 90 and spent(EUR, 3660) >= 50000"
        })
        #expect(narrowed.segment.version == 2 && narrowed.left == 0 && narrowed.entered == 0)
        #expect(try await members("lapsed") == [c])
        #expect(try await count("analytics.segment_versions", database) == 3)

        // An erased customer leaves every segment.
        try await events.consume("customer", .customerErased(.with { $0.customerID = c.uuidString }))
        #expect(try await members("lapsed") == [])

        // Every entry and exit is on analytics' feed, in order.
        let published = try await outboxEvents("analytics", type: "SegmentMembershipChanged", database).map(\.segmentMembershipChanged)
        let trail = published.map { "\($0.segmentID) \($0.customerID == a.uuidString.lowercased() ? "A" : $0.customerID == b.uuidString.lowercased() ? "B" : "C") \($0.entered ? "in" : "out")" }
        // Changes of one pass are listed by segment, then entries before exits; customers in id order.
        let passes: [Set<String>] = [
          ["big-spenders A in"], ["lapsed C in"], ["big-spenders B in"], ["big-spenders A out"],
          ["big-spenders B out", "lapsed A in", "lapsed B in"], ["lapsed A out", "lapsed B out"], ["lapsed C out"],
        ]
        var position = 0
        for pass in passes {
          #expect(Set(trail[position..<min(trail.count, position + pass.count)]) == pass, "\(trail)")
          position += pass.count
        }
        #expect(trail.count == position)
        #expect(published.last?.segmentVersion == 2)

        let listed = try await api.listSegments(.init()).segments
        #expect(listed.map(\.id) == ["big-spenders", "lapsed"] && listed.map(\.memberCount) == [0, 0])
        #expect(try await Self.memberPages(of: "big-spenders", api).isEmpty)  // no members: no page

        // Bad input: nothing stored.
        await expectStatus(.invalidArgument, field: "rule", mentioning: "'orderz' at position 1") {
          try await api.putSegment(.with { $0.id = "x"; $0.rule = "orderz > 1" })
        }
        await expectStatus(.invalidArgument, field: "id") { try await api.putSegment(.with { $0.id = "Big Spenders"; $0.rule = "orders > 1" }) }
        await expectStatus(.invalidArgument, field: "rule") {
          try await api.putSegment(.with { $0.id = "long"; $0.rule = String(repeating: "orders > 1 and ", count: 200) + "orders > 1" })
        }
        await expectStatus(.notFound) { try await members("nope") }
        await expectStatus(.invalidArgument, field: "segment_id") { try await members("No Such/Id") }
        await expectStatus(.notFound) { try await Self.memberPages(of: "nope", api) }
        await expectStatus(.invalidArgument, field: "segment_id") { try await Self.memberPages(of: "No Such/Id", api) }
        for size: Int32 in [-1, 10_001] {
          await expectStatus(.invalidArgument, field: "page_size") { try await Self.memberPages(of: "lapsed", size: size, api) }
        }
        for id in ["lapsed\u{0}", String(repeating: "a", count: 65), ""] {
          await expectStatus(.invalidArgument, field: "segment_id") { try await members(id) }
          await expectStatus(.invalidArgument, field: "segment_id") { try await Self.memberPages(of: id, api) }
        }
        await expectStatus(.invalidArgument, field: "rule", mentioning: "NUL") {
          try await api.putSegment(.with { $0.id = "nul"; $0.rule = "orders > 1\u{0}" })
        }
        await expectStatus(.invalidArgument, field: "description") {
          try await api.putSegment(.with { $0.id = "wordy"; $0.rule = "orders > 1"; $0.description_p = String(repeating: "x", count: 501) })
        }
        await expectStatus(.invalidArgument, field: "customer_id") { try await api.getCustomerPrediction(.with { $0.customerID = "1; drop" }) }
        #expect(try await count("analytics.segments", database) == 2)
      }
    }
  }

  /// Tags and attributes are read from the customer service (here a directory standing in for it) only
  /// when the feed says they changed, and rules compare them: created, updated, merged and erased.
  @Test func tagsAndAttributesComeFromTheCustomerWhenTheFeedSaysTheyChanged() async throws {
    try await AnalyticsRfmTests.withService { address, events, database in
      let (a, b, c) = (UUID(), UUID(), UUID())
      @Sendable func customer(_ id: UUID, version: Int64, tags: [String], _ attributes: [String: Rapport_Customer_V1_AttributeValue.OneOf_Value])
        -> Rapport_Customer_V1_Customer
      {
        .with { customer in
          customer.id = id.uuidString.lowercased()
          customer.state = .active
          customer.version = version
          customer.tags = tags
          customer.attributes = attributes.mapValues { value in .with { $0.value = value } }
        }
      }
      let directory = Mutex<[UUID: Rapport_Customer_V1_Customer]>([
        a: customer(a, version: 1, tags: ["vip"], ["tier": .stringValue("gold"), "points": .intValue(1_200), "newsletter": .boolValue(true)]),
        b: customer(b, version: 1, tags: [], ["tier": .stringValue("silver")]),
        c: customer(c, version: 1, tags: [], [:]),
      ])
      let reads = Mutex<[UUID]>([])
      let profiles = CustomerProfiles { id in
        reads.withLock { $0.append(id) }
        return directory.withLock { $0[id] }
      }
      @Sendable func created(_ id: UUID, _ fields: [String]) -> Rapport_Events_V1_Event.OneOf_Payload {
        .customerCreated(.with { $0.customerID = id.uuidString; $0.profileFields = fields })
      }
      @Sendable func updated(_ id: UUID, _ fields: [String]) -> Rapport_Events_V1_Event.OneOf_Payload {
        .customerUpdated(.with { $0.customerID = id.uuidString; $0.changedFields = fields })
      }
      try await events.consume("customer", profiles: profiles, created(a, ["tags", "attributes"]), created(b, ["attributes"]), created(c, []))
      #expect(Set(reads.withLock { $0 }) == [a, b])

      try await withClient(to: address) { client in
        let api = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client)
        @Sendable func members(_ id: String) async throws -> Set<UUID> { try await Self.members(of: id, api) }
        let gold = try await api.putSegment(.with { $0.id = "vip-gold"; $0.rule = "tagged(vip) and attribute(tier) = 'gold' and attribute(points) >= 1000" })
        #expect(gold.entered == 1)
        #expect(try await members("vip-gold") == [a])
        _ = try await api.putSegment(.with { $0.id = "no-newsletter"; $0.rule = "not attribute(newsletter) = true" })
        #expect(try await members("no-newsletter") == [b])

        // B becomes a gold VIP; a change of name is not read.
        directory.withLock {
          $0[b] = customer(b, version: 2, tags: ["vip"], ["tier": .stringValue("gold"), "points": .doubleValue(1_500.5)])
        }
        try await events.consume("customer", profiles: profiles, updated(b, ["tags", "attributes.tier"]), updated(a, ["given_name"]))
        #expect(reads.withLock { $0.count } == 3)
        #expect(try await members("vip-gold") == [a, b])
        // A stale read (an older version) does not overwrite what is stored.
        try await events.store.client.withConnection { connection in
          try await events.store.store(profiles: [b: customer(b, version: 1, tags: [], [:])], on: connection)
        }
        try await events.store.evaluateAllSegments(customers: nil)
        #expect(try await members("vip-gold") == [a, b])

        // B is merged into A: B's profile goes, A's is read again.
        try await events.consume("customer", profiles: profiles, .customerMerged(.with { $0.survivorID = a.uuidString; $0.duplicateID = b.uuidString }))
        #expect(reads.withLock { $0.last } == a)
        #expect(try await members("vip-gold") == [a])
        #expect(try await members("no-newsletter") == [])
        // A is erased: A leaves and nothing of A's profile stays.
        try await events.consume("customer", profiles: profiles, .customerErased(.with { $0.customerID = a.uuidString }))
        #expect(try await members("vip-gold") == [])
        #expect(try await count("analytics.customer_profiles", database) == 0)
        #expect(try await count("analytics.customer_attributes", database) == 0)
      }
    }
  }

  /// The facts a segment pass reads for a set of customers at once are the values each customer's own
  /// metrics show (and, for windows and first/last orders, the orders placed): 45 customers with
  /// cancellations, refunds, tickets, ratings and two currencies, RFM edges computed and a model fitted.
  @Test func factsReadForASetAreEachCustomersMetrics() async throws {
    try await AnalyticsRfmTests.withService { _, events, _ in
      struct Placed { let customer: UUID, amount: Int64, daysAgo: Double, currency: String, cancelled: Bool, refunded: Int64 }
      var placed: [Placed] = []
      var payloads: [Rapport_Events_V1_Event.OneOf_Payload] = []
      let customers = (0..<45).map { _ in UUID() }
      for (i, customer) in customers.enumerated() {
        for k in 0...(i % 5) {
          let order = UUID(), amount = Int64(1_000 + 150 * i + 10 * k), daysAgo = Double(300 - 2 * i - k * (5 + i % 11))
          let currency = i == 44 ? "GBP" : "EUR"
          let cancelled = (i + k) % 9 == 0, refunded: Int64 = (i + k) % 7 == 0 && !cancelled ? 200 : 0
          placed.append(Placed(customer: customer, amount: amount, daysAgo: daysAgo, currency: currency, cancelled: cancelled, refunded: refunded))
          payloads.append(AnalyticsRfmTests.placed(order, customer, amount, currency, daysAgo: daysAgo))
          if cancelled { payloads.append(.orderCancelled(.with { $0.orderID = order.uuidString; $0.customerID = customer.uuidString })) }
          if refunded > 0 {
            payloads.append(.orderRefunded(.with {
              $0.orderID = order.uuidString
              $0.customerID = customer.uuidString
              $0.amountRefunded = .money(refunded, currency)
            }))
          }
        }
      }
      for payload in payloads { _ = try await events.apply("order", payload) }
      for (i, customer) in customers.enumerated() where i % 4 == 0 {
        let ticket = UUID().uuidString
        _ = try await events.apply(
          "support", .ticketOpened(.with { $0.ticketID = ticket; $0.customerID = customer.uuidString }),
          .ticketRated(.with { $0.ticketID = ticket; $0.customerID = customer.uuidString; $0.rating = Int32(1 + i % 5) }))
      }
      let store = events.store
      try await store.computeRfmEdges()
      #expect(try await store.fitPredictionModel(currency: "EUR", asOf: nil) != nil)

      let values: [SegmentRule.Value] = [
        .orders, .cancelledOrders, .ticketsOpened, .slaBreaches, .averageRating, .daysSinceLastOrder, .daysSinceFirstOrder,
        .rfmSegment, .churnProbability, .probabilityAlive, .expectedPurchases, .netRevenue("EUR"), .clv("EUR"), .spent("EUR", days: 120),
      ]
      var needs = AnalyticsStore.SegmentNeeds([])
      needs.values = Set(values)
      let now = Date()
      let facts = try await store.facts(customers + [UUID()], needs: needs, now: now)
      #expect(facts.count == 46)
      var compared = 0
      for customer in customers {
        let m = try await store.metrics(customerID: customer, withRecommendations: false)
        let mine = placed.filter { $0.customer == customer }
        let kept = mine.filter { !$0.cancelled }
        let days = kept.map { Double(Int64($0.daysAgo)) }
        let rfmName = m.hasRfm ? SegmentRule.segmentNames.first { $0.value == m.rfm.segment }.map { SegmentRule.Literal.text($0.key) } : nil
        let expected: [SegmentRule.Value: SegmentRule.Literal?] = [
          .orders: .number(Double(kept.count)),
          .cancelledOrders: .number(Double(mine.count - kept.count)),
          .ticketsOpened: .number(Double(m.ticketsOpened)),
          .slaBreaches: .number(0),
          .averageRating: m.ratingCount > 0 ? .number(m.averageRating) : nil,
          .daysSinceLastOrder: days.min().map { .number($0) },
          .daysSinceFirstOrder: days.max().map { .number($0) },
          .rfmSegment: rfmName,
          .churnProbability: m.hasPrediction ? .number(m.prediction.churnProbability) : nil,
          .probabilityAlive: m.hasPrediction ? .number(m.prediction.probabilityAlive) : nil,
          .expectedPurchases: m.hasPrediction ? .number(m.prediction.expectedPurchases12M) : nil,
          .netRevenue("EUR"): .number(Double(m.netRevenue.first { $0.currency == "EUR" }?.amountMinor ?? 0)),
          .clv("EUR"): m.hasPrediction && m.prediction.currency == "EUR" ? .number(m.prediction.clv12MMinor) : nil,
          .spent("EUR", days: 120): .number(Double(kept.filter { $0.currency == "EUR" && $0.daysAgo < 120 }.reduce(0) { $0 + $1.amount - $1.refunded })),
        ]
        for value in values {
          #expect(facts[customer]?.values[value] == expected[value]!, "\(value) of customer \(customers.firstIndex(of: customer)!)")
          compared += 1
        }
      }
      // The set covers every kind of answer: RFM and predictions for most, none for the GBP customer's EUR.
      #expect(compared == 45 * values.count)
      #expect(facts.values.filter { $0.values[.rfmSegment] != nil }.count >= 40)
      #expect(facts.values.filter { $0.values[.clv("EUR")] != nil }.count >= 30)
      #expect(facts[customers[44]]?.values[.clv("EUR")] == nil && facts[customers[44]]?.values[.orders] != nil)
    }
  }
}
