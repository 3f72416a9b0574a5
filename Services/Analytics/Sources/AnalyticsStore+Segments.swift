import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Rule segments (docs/ANALYTICS.md, "Rule segments"): stored and versioned rules, and their members,
/// recomputed for the customers an applied batch touched and, on a schedule, for everyone — so a rule
/// such as `days_since_last_order > 90` moves people without an event. Each entry and exit is a
/// `SegmentMembershipChanged` event on analytics' own feed, written with the membership change.
extension AnalyticsStore {
  struct StoredSegment: Sendable {
    let id: String
    let rule: SegmentRule
    let proto: Rapport_Analytics_V1_Segment
  }

  static let segmentColumns = """
    s.id, s.rule, s.description, s.version, s.created_at, s.updated_at, s.evaluated_at,
    (SELECT count(*) FROM analytics.segment_members m WHERE m.segment_id = s.id)
    """

  func segments(id: String? = nil) async throws -> [StoredSegment] {
    let rows = try await client.query(
      """
      SELECT \(unescaped: Self.segmentColumns) FROM analytics.segments s
      WHERE \(id)::text IS NULL OR s.id = \(id)::text ORDER BY s.id
      """, logger: logger)
    var segments: [StoredSegment] = []
    for try await (id, rule, description, version, created, updated, evaluated, members) in rows.decode(
      (String, String, String, Int64, Date, Date, Date?, Int64).self)
    {
      let proto = Rapport_Analytics_V1_Segment.with {
        $0.id = id
        $0.rule = rule
        $0.description_p = description
        $0.version = version
        $0.memberCount = members
        $0.createTime = .init(microsecondsOf: created)
        $0.updateTime = .init(microsecondsOf: updated)
        if let evaluated { $0.evaluateTime = .init(microsecondsOf: evaluated) }
      }
      segments.append(StoredSegment(id: id, rule: try SegmentRule.parse(rule), proto: proto))
    }
    return segments
  }

  /// Stores the segment (a new version when the rule or description changed) and recomputes its members
  /// for everyone. Returns how many entered and left.
  func putSegment(id: String, rule: String, description: String, now: Date = Date()) async throws
    -> (Rapport_Analytics_V1_Segment, entered: Int, left: Int)
  {
    _ = try SegmentRule.parse(rule)
    try await client.transaction(logger: logger) { connection in
      try await connection.query(
        """
        INSERT INTO analytics.segments (id, rule, description, version, created_at, updated_at)
        VALUES (\(id), \(rule), \(description), 1, \(now), \(now))
        ON CONFLICT (id) DO UPDATE SET rule = EXCLUDED.rule, description = EXCLUDED.description,
          version = segments.version + 1, updated_at = EXCLUDED.updated_at
        WHERE (segments.rule, segments.description) IS DISTINCT FROM (EXCLUDED.rule, EXCLUDED.description)
        """, logger: logger)
      try await connection.query(
        """
        INSERT INTO analytics.segment_versions (segment_id, version, rule, description, created_at)
        SELECT id, version, rule, description, updated_at FROM analytics.segments WHERE id = \(id)
        ON CONFLICT DO NOTHING
        """, logger: logger)
    }
    guard let segment = try await segments(id: id).first else { throw RPCFailure.unavailable("segment vanished; retry") }
    let (entered, left) = try await evaluateSegments([segment], customers: nil, now: now)
    let updated = try await segments(id: id).first?.proto ?? segment.proto
    return (updated, entered, left)
  }

  /// Every customer analytics knows (an order, a ticket, a consent decision, tags or attributes) who was
  /// not erased.
  func knownCustomers(among ids: [UUID]?) async throws -> [UUID] {
    let rows = try await client.query(
      """
      SELECT customer_id FROM (
        SELECT customer_id FROM analytics.customer_metrics
        UNION SELECT customer_id FROM analytics.customer_consent
        UNION SELECT customer_id FROM analytics.customer_profiles) known
      WHERE (\(ids)::uuid[] IS NULL OR customer_id = ANY(\(ids)::uuid[]))
        AND customer_id NOT IN (SELECT customer_id FROM analytics.erased_customers)
      """, logger: logger)
    var customers: [UUID] = []
    for try await id in rows.decode(UUID.self) { customers.append(id) }
    return customers
  }

  /// Recomputes `segments` for `customers` (everyone known when nil): customers no longer known (merged
  /// away, erased) leave. Returns how many entered and left in all.
  @discardableResult
  func evaluateSegments(_ segments: [StoredSegment], customers ids: [UUID]?, now: Date = Date()) async throws
    -> (entered: Int, left: Int)
  {
    guard !segments.isEmpty else { return (0, 0) }
    let known = try await knownCustomers(among: ids)
    var facts: [UUID: SegmentFacts] = [:]
    let needs = SegmentNeeds(segments.map(\.rule))
    for start in stride(from: 0, to: known.count, by: Self.factsChunk) {
      facts.merge(try await self.facts(Array(known[start..<min(start + Self.factsChunk, known.count)]), needs: needs, now: now)) { $1 }
    }
    var entered = 0, left = 0
    for segment in segments {
      let members = Set(known.filter { segment.rule.matches(facts[$0]!) })
      let scope = ids ?? []
      let change = try await client.transaction(logger: logger) { connection in
        // Members now in scope, compared with those stored (locked, so two passes do not both publish).
        let rows = try await connection.query(
          """
          SELECT customer_id FROM analytics.segment_members
          WHERE segment_id = \(segment.id) AND (\(ids == nil) OR customer_id = ANY(\(scope)::uuid[]))
          FOR UPDATE
          """, logger: logger)
        var stored = Set<UUID>()
        for try await id in rows.decode(UUID.self) { stored.insert(id) }
        let entering = members.subtracting(stored).sorted { $0.uuidString < $1.uuidString }
        let exiting = stored.subtracting(members).sorted { $0.uuidString < $1.uuidString }
        guard !entering.isEmpty || !exiting.isEmpty else { return (0, 0) }
        // A concurrent pass may have added a member this one did not see (no row to lock yet): only the
        // rows this statement writes are entries, so each is published once.
        let joining = try await connection.query(
          """
          INSERT INTO analytics.segment_members (segment_id, customer_id, since)
          SELECT \(segment.id), unnest(\(entering)::uuid[]), \(now)
          ON CONFLICT DO NOTHING RETURNING customer_id
          """, logger: logger
        ).ids()
        let leaving = try await connection.query(
          """
          DELETE FROM analytics.segment_members WHERE segment_id = \(segment.id) AND customer_id = ANY(\(exiting)::uuid[])
          RETURNING customer_id
          """, logger: logger
        ).ids()
        let events = (joining.map { ($0, true) } + leaving.map { ($0, false) }).map { customer, entering in
          Outbox.event(
            aggregateType: "segment", aggregateID: segment.id, occurredAt: now,
            .segmentMembershipChanged(.with {
              $0.segmentID = segment.id
              $0.segmentVersion = segment.proto.version
              $0.customerID = customer.uuidString.lowercased()
              $0.entered = entering
              $0.changeTime = .init(microsecondsOf: now)
            }))
        }
        try await AnalyticsMigrations.outbox.append(contentsOf: events, on: connection, logger: logger)
        return (joining.count, leaving.count)
      }
      entered += change.0
      left += change.1
      if ids == nil {
        try await client.query(
          "UPDATE analytics.segments SET evaluated_at = \(now) WHERE id = \(segment.id)", logger: logger)
      }
    }
    return (entered, left)
  }

  /// Recomputes every segment for `customers` (after a batch of their events) or for everyone.
  func evaluateAllSegments(customers: [UUID]?, now: Date = Date()) async throws {
    try await evaluateSegments(try await segments(), customers: customers, now: now)
  }

  /// What a set of rules reads.
  struct SegmentNeeds: Sendable {
    var values: Set<SegmentRule.Value> = []
    var consent = false
    var tags = false
    init(_ rules: [SegmentRule]) {
      for rule in rules {
        values.formUnion(rule.values)
        consent = consent || rule.readsConsent
        tags = tags || rule.readsTags
      }
    }

    /// The attribute keys the rules compare.
    var attributes: [String] {
      values.compactMap { if case .attribute(let key) = $0 { key } else { nil } }.sorted()
    }

    /// Values read from the orders, support and predictions (everything but the profile).
    var metrics: Set<SegmentRule.Value> { values.filter { if case .attribute = $0 { false } else { true } } }
  }

  /// Customers whose facts are read together (a few statements per chunk, whatever its size).
  static let factsChunk = 2_000

  /// The facts `needs` asks for about each of `customers`, at `now`: the same values `metrics` shows
  /// (orders not cancelled, RFM against the edges in use, the prediction in the main currency), read for
  /// the whole set in one statement per kind of value.
  func facts(_ customers: [UUID], needs: SegmentNeeds, now: Date) async throws -> [UUID: SegmentFacts] {
    var facts = Dictionary(uniqueKeysWithValues: customers.map { ($0, SegmentFacts()) })
    guard !customers.isEmpty else { return facts }
    if needs.tags || !needs.attributes.isEmpty {
      let (tags, attributes) = try await profiles(of: customers, keys: needs.attributes)
      for customer in customers {
        facts[customer]?.tags = tags[customer] ?? []
        for key in needs.attributes { facts[customer]?.values[.attribute(key)] = attributes[customer]?[key] }
      }
    }
    if !needs.metrics.isEmpty {
      let counters = try await supportCounters(of: customers)
      let spending = try await spending(of: customers)
      let edges = try await scheduled.edges { try await rfmEdges() }
      // Predictions: in each customer's main currency, and in each currency a `clv(…)` names.
      var currencies = Set(needs.values.compactMap { if case .clv(let currency) = $0 { currency } else { nil } })
      let readsPrediction = needs.values.contains { [.churnProbability, .probabilityAlive, .expectedPurchases].contains($0) }
      if readsPrediction { currencies.formUnion(spending.values.compactMap { Self.mainCurrency($0)?.currency }) }
      var predictions: [String: [UUID: Rapport_Analytics_V1_CustomerPrediction]] = [:]
      for currency in currencies {
        guard let model = try await scheduled.model(currency, { try await predictionModel(currency: currency) }) else { continue }
        predictions[currency] = try await histories(currency: currency, asOf: now, customers: customers)
          .mapValues { Self.prediction($0, model: model, discountRate: monthlyDiscountRate) }
      }
      var spent: [SegmentRule.Value: [UUID: Int64]] = [:]
      for value in needs.metrics {
        if case .spent(let currency, let days) = value {
          spent[value] = try await self.spent(customers, currency: currency, since: now.addingTimeInterval(-Double(days) * 86_400))
        }
      }
      for customer in customers {
        let spend = spending[customer] ?? []
        let counter = counters[customer]
        let main = Self.mainCurrency(spend).flatMap { predictions[$0.currency]?[customer] }
        let first = spend.compactMap(\.first).min(), last = spend.compactMap(\.last).max()
        for value in needs.metrics {
          let fact: SegmentRule.Literal?
          switch value {
          case .orders: fact = .number(Double((counter?.orders ?? 0) - spend.reduce(0) { $0 + $1.cancelled }))
          case .cancelledOrders: fact = .number(Double(spend.reduce(0) { $0 + $1.cancelled }))
          case .ticketsOpened: fact = .number(Double(counter?.ticketsOpened ?? 0))
          case .slaBreaches: fact = .number(Double(counter?.slaBreaches ?? 0))
          case .averageRating: fact = counter.flatMap { $0.ratings > 0 ? .number(Double($0.ratingSum) / Double($0.ratings)) : nil }
          case .daysSinceLastOrder: fact = last.map { .number(Double(Self.wholeDays(from: $0, to: now))) }
          case .daysSinceFirstOrder: fact = first.map { .number(Double(Self.wholeDays(from: $0, to: now))) }
          case .rfmSegment:
            fact = Self.rfm(spend, edges: edges, now: now).flatMap { rfm in
              SegmentRule.segmentNames.first(where: { $0.value == rfm.segment }).map { .text($0.key) }
            }
          case .churnProbability: fact = main.map { .number($0.churnProbability) }
          case .probabilityAlive: fact = main.map { .number($0.probabilityAlive) }
          case .expectedPurchases: fact = main.map { .number($0.expectedPurchases12M) }
          case .netRevenue(let currency): fact = .number(Double(spend.first { $0.currency == currency }?.net ?? 0))
          case .clv(let currency):
            fact = predictions[currency]?[customer].flatMap {
              $0.clv12MMinor > 0 || $0.expectedSpendMinor > 0 ? .number($0.clv12MMinor) : nil
            }
          case .spent: fact = .number(Double(spent[value]?[customer] ?? 0))
          case .attribute: continue
          }
          facts[customer]?.values[value] = fact
        }
      }
    }
    if needs.consent {
      let rows = try await client.query(
        """
        SELECT customer_id, purpose, channel, granted FROM analytics.customer_consent
        WHERE customer_id = ANY(\(customers)::uuid[])
        """, logger: logger)
      for try await (customer, purpose, channel, granted) in rows.decode((UUID, Int, Int, Bool).self) {
        facts[customer]?.consent[.init(purpose: purpose, channel: channel)] = granted
      }
    }
    return facts
  }

  /// The counters `customer_metrics` keeps: orders placed (cancelled ones included) and support's.
  private struct Counters {
    let orders: Int64, ticketsOpened: Int64, slaBreaches: Int64, ratingSum: Int64, ratings: Int64
  }

  private func supportCounters(of customers: [UUID]) async throws -> [UUID: Counters] {
    let rows = try await client.query(
      """
      SELECT customer_id, order_count, tickets_opened, sla_breaches, rating_sum, rating_count
      FROM analytics.customer_metrics WHERE customer_id = ANY(\(customers)::uuid[])
      """, logger: logger)
    var counters: [UUID: Counters] = [:]
    for try await (id, orders, opened, breaches, sum, count) in rows.decode((UUID, Int64, Int64, Int64, Int64, Int64).self) {
      counters[id] = Counters(orders: orders, ticketsOpened: opened, slaBreaches: breaches, ratingSum: sum, ratings: count)
    }
    return counters
  }

  /// Net spend of each customer's orders in `currency` placed since `since` and not cancelled.
  private func spent(_ customers: [UUID], currency: String, since: Date) async throws -> [UUID: Int64] {
    let rows = try await client.query(
      """
      SELECT customer_id, sum(total_minor - refunded_minor)::int8 FROM analytics.orders
      WHERE customer_id = ANY(\(customers)::uuid[]) AND currency = \(currency)::bpchar AND NOT cancelled AND placed_at > \(since)
      GROUP BY customer_id
      """, logger: logger)
    var spent: [UUID: Int64] = [:]
    for try await (customer, total) in rows.decode((UUID, Int64).self) { spent[customer] = total }
    return spent
  }

  /// The customers a batch of events is about (both ids of a merge).
  static func customers(of batch: [Rapport_Events_V1_Event]) -> [UUID] {
    var ids: Set<UUID> = []
    for event in batch {
      let raw: [String]
      switch event.payload {
      case .orderPlaced(let e)?: raw = [e.customerID]
      case .orderCancelled(let e)?: raw = [e.customerID]
      case .orderRefunded(let e)?: raw = [e.customerID]
      case .ticketOpened(let e)?: raw = [e.customerID]
      case .ticketStatusChanged(let e)?: raw = [e.customerID]
      case .slaBreached(let e)?: raw = [e.customerID]
      case .ticketRated(let e)?: raw = [e.customerID]
      case .consentChanged(let e)?: raw = [e.customerID]
      case .customerMerged(let e)?: raw = [e.survivorID, e.duplicateID]
      case .customerErased(let e)?: raw = [e.customerID]
      case .customerCreated(let e)?: raw = [e.customerID]
      case .customerUpdated(let e)?: raw = [e.customerID]
      default: raw = []
      }
      ids.formUnion(raw.compactMap(UUID.init(uuidString:)))
    }
    return ids.sorted { $0.uuidString < $1.uuidString }
  }

  /// Up to `limit` members of segment `id` after the member `after` (since, customer), in that order;
  /// customer ids as lower-case text. One row of two arrays: rows one by one cost the stream twice as
  /// much decoding.
  func segmentMembers(_ id: String, after: (Date, UUID)?, limit: Int) async throws -> [(customer: String, since: Date)] {
    let rows = try await client.query(
      """
      SELECT coalesce(array_agg(customer_id::text ORDER BY since, customer_id), '{}'),
             coalesce(array_agg(since ORDER BY since, customer_id), '{}')
      FROM (
        SELECT customer_id, since FROM analytics.segment_members
        WHERE segment_id = \(id) AND (\(after?.0)::timestamptz IS NULL OR (since, customer_id) > (\(after?.0)::timestamptz, \(after?.1)::uuid))
        ORDER BY since, customer_id LIMIT \(limit)) page
      """, logger: logger)
    for try await (customers, since) in rows.decode(([String], [Date]).self) {
      guard customers.count == since.count else { throw RPCFailure.internal("member arrays differ in length") }
      return zip(customers, since).map { (customer: $0, since: $1) }
    }
    return []
  }
}

extension AsyncSequence where Element == PostgresRow {
  /// The rows' single uuid column, in id order.
  func ids() async throws -> [UUID] {
    var ids: [UUID] = []
    for try await id in decode(UUID.self) { ids.append(id) }
    return ids.sorted { $0.uuidString < $1.uuidString }
  }
}
