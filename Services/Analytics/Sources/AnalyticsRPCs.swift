import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportCore
import RapportProtos
import SwiftProtobuf

/// `rapport.analytics.v1.AnalyticsService`.
struct AnalyticsRPCs: Rapport_Analytics_V1_AnalyticsService.SimpleServiceProtocol {
  let store: AnalyticsStore
  /// The feeds analytics consumes, for `GetPipelineStatus`.
  let feeds: [Feed]
  let failures: FeedFailures
  let logger: Logger

  struct Feed: Sendable {
    let source: String
    let feed: Rapport_Events_V1_EventFeed.Client<HTTP2ClientTransport.Posix>
    let types: [String]
  }

  func getPipelineStatus(
    request: Rapport_Analytics_V1_GetPipelineStatusRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_GetPipelineStatusResponse {
    var sources: [Rapport_Analytics_V1_SourceStatus] = []
    for feed in feeds {
      let (cursor, applied) = try await store.cursorStatus(source: feed.source)
      var status = Rapport_Analytics_V1_SourceStatus()
      status.source = feed.source
      status.cursor = cursor
      if let applied { status.lastAppliedTime = .init(microsecondsOf: applied) }
      var options = CallOptions.defaults
      options.timeout = .seconds(1)
      if let backlog = try? await feed.feed.getBacklog(
        .with {
          $0.afterSequence = cursor
          $0.types = feed.types
        }, options: options)
      {
        status.reachable = true
        status.headSequence = backlog.headSequence
        status.backlog = backlog.pendingEvents
        if backlog.hasOldestPendingTime {
          status.lagSeconds = max(0, Date().timeIntervalSince(backlog.oldestPendingTime.date))
        }
      }
      if let failure = failures.latest(feed.source) {
        status.lastError = failure.message
        status.lastErrorTime = .init(microsecondsOf: failure.time)
      }
      sources.append(status)
    }
    let zones = try await store.zoneRows().map { row in
      Rapport_Analytics_V1_KeptZoneStatus.with {
        $0.zone = row.zone.identifier
        $0.learned = row.learned
        $0.ready = row.ready
        if let until = row.builtUntil { $0.builtUntil = .init(microsecondsOf: until) }
        if row.learned { $0.lastReadTime = .init(microsecondsOf: row.readAt) }
      }
    }
    return .with {
      $0.sources = sources
      $0.keptZones = zones
    }
  }

  func getCustomerMetrics(
    request: Rapport_Analytics_V1_GetCustomerMetricsRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_GetCustomerMetricsResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let metrics = try await store.metrics(customerID: id)
    return .with { $0.metrics = metrics }
  }

  func batchGetCustomerMetrics(
    request: Rapport_Analytics_V1_BatchGetCustomerMetricsRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_BatchGetCustomerMetricsResponse {
    let ids = try Validate.uuids(request.customerIds, field: "customer_ids")
    let found = try await store.metrics(customerIDs: Array(Set(ids)))
    let results = try inOrder(ids, found) { metrics in Rapport_Analytics_V1_GetCustomerMetricsResponse.with { $0.metrics = metrics } }
    return .with { $0.results = results }
  }

  func getRfmEdges(
    request: Rapport_Analytics_V1_GetRfmEdgesRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_GetRfmEdgesResponse {
    let edges = try await store.rfmEdges()
    return .with { response in
      response.recencyDays = edges.recency
      response.frequency = edges.frequency
      response.population = edges.population
      response.monetary = edges.monetary.keys.sorted().map { currency in
        .with {
          $0.currency = currency
          $0.edgesMinor = edges.monetary[currency] ?? []
          $0.population = edges.monetaryPopulation[currency] ?? 0
        }
      }
      if let computed = edges.computedAt { response.computedAt = .init(microsecondsOf: computed) }
    }
  }

  func getSalesSummary(
    request: Rapport_Analytics_V1_GetSalesSummaryRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_GetSalesSummaryResponse {
    let unit: String
    let shortest: TimeInterval
    switch try Validate.specified(request.granularity, field: "granularity") {
    case .day: (unit, shortest) = ("day", 86_400)
    case .week: (unit, shortest) = ("week", 7 * 86_400)
    default: (unit, shortest) = ("month", 28 * 86_400)
    }
    let range = try Self.range(
      from: request.from, request.hasFrom, to: request.to, request.hasTo, channel: request.channel,
      currency: request.currency, longest: shortest * 1_000)
    let zone = try Self.timeZone(request.timeZone)
    let (periods, total) = try await store.salesSummary(range, unit: unit, timeZone: zone)
    return .with {
      $0.periods = periods
      $0.total = total
    }
  }

  func getTopProducts(
    request: Rapport_Analytics_V1_GetTopProductsRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_GetTopProductsResponse {
    let range = try Self.range(
      from: request.from, request.hasFrom, to: request.to, request.hasTo, channel: request.channel,
      currency: request.currency, longest: 3_660 * 86_400)
    let limit = try Validate.pageSize(request.limit, field: "limit", default: 10, max: 100)
    let products =
      request.rfmSegment == .unspecified
      ? try await store.topProducts(range, limit: limit)
      : try await store.topProducts(
        range, limit: limit, rfmSegment: try Validate.known(request.rfmSegment, field: "rfm_segment"))
    return .with { $0.products = products }
  }

  func getCohortRetention(
    request: Rapport_Analytics_V1_GetCohortRetentionRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_GetCohortRetentionResponse {
    let (from, to) = try Self.interval(
      from: request.from, request.hasFrom, to: request.to, request.hasTo, longest: 120 * 31 * 86_400,
      what: "at most 120 months")
    let zone = try Self.timeZone(request.timeZone)
    let cohorts = try await store.cohorts(from: from, to: to, timeZone: zone)
    return .with { $0.cohorts = cohorts }
  }

  /// `from` and `to`: required, in order, at most `longest` apart (`what` says the limit).
  static func interval(
    from: Google_Protobuf_Timestamp, _ hasFrom: Bool, to: Google_Protobuf_Timestamp, _ hasTo: Bool,
    longest: TimeInterval, what: String
  ) throws -> (Date, Date) {
    guard let start = try Validate.time(from, isSet: hasFrom, field: "from") else {
      throw RPCFailure.invalid("from", "is required")
    }
    guard let end = try Validate.time(to, isSet: hasTo, field: "to") else { throw RPCFailure.invalid("to", "is required") }
    guard end > start else { throw RPCFailure.invalid("to", "must be after from") }
    guard end.timeIntervalSince(start) <= longest else { throw RPCFailure.invalid("to", "the range is too long (\(what))") }
    return (start, end)
  }

  func recommend(
    request: Rapport_Analytics_V1_RecommendRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_RecommendResponse {
    let customer = try Validate.uuid(request.customerID, field: "customer_id")
    let limit = try Validate.pageSize(request.limit, field: "limit", default: 10, max: AnalyticsStore.mostRecommended)
    let products = try await store.recommend(customer, limit: limit)
    return .with { $0.products = products }
  }

  func getSimilarProducts(
    request: Rapport_Analytics_V1_GetSimilarProductsRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_GetSimilarProductsResponse {
    let sku = try Validate.required(request.sku, field: "sku", max: 64)
    let limit = try Validate.pageSize(request.limit, field: "limit", default: 10, max: 100)
    guard let products = try await store.similarProducts(sku, limit: limit) else { throw RPCFailure.notFound("product", sku) }
    return .with { $0.products = products }
  }

  func fitPredictionModel(
    request: Rapport_Analytics_V1_FitPredictionModelRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_FitPredictionModelResponse {
    let currency = try Validate.currency(request.currency)
    let asOf = try Validate.time(request.asOf, isSet: request.hasAsOf, field: "as_of")
    if let asOf, asOf > Date() { throw RPCFailure.invalid("as_of", "is in the future") }
    guard let model = try await store.fitPredictionModel(currency: currency, asOf: asOf) else {
      throw RPCFailure.failedPrecondition("no order in \(currency) was placed by as_of")
    }
    return .with { $0.model = model }
  }

  func getPredictionModel(
    request: Rapport_Analytics_V1_GetPredictionModelRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_GetPredictionModelResponse {
    let currency = try Validate.currency(request.currency)
    let model = try await store.predictionModel(currency: currency)
    return .with { if let model { $0.model = model } }
  }

  func getCustomerPrediction(
    request: Rapport_Analytics_V1_GetCustomerPredictionRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_GetCustomerPredictionResponse {
    let customer = try Validate.uuid(request.customerID, field: "customer_id")
    let currency = request.currency.isEmpty ? nil : try Validate.currency(request.currency)
    let prediction = try await store.prediction(customer, currency: currency)
    return .with { if let prediction { $0.prediction = prediction } }
  }

  func putSegment(
    request: Rapport_Analytics_V1_PutSegmentRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_PutSegmentResponse {
    let id = try Self.segmentID(request.id)
    guard request.rule.count <= 2_000 else { throw RPCFailure.invalid("rule", "is longer than 2000 characters") }
    do {
      _ = try SegmentRule.parse(request.rule)
    } catch let error as SegmentRuleError {
      throw RPCFailure.invalid("rule", error.description)
    }
    let description = try Validate.optional(request.description_p, field: "description", max: 500)
    let (segment, entered, left) = try await store.putSegment(id: id, rule: request.rule, description: description)
    return .with {
      $0.segment = segment
      $0.entered = Int64(entered)
      $0.left = Int64(left)
    }
  }

  func listSegments(
    request: Rapport_Analytics_V1_ListSegmentsRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_ListSegmentsResponse {
    let segments = try await store.segments()
    return .with { $0.segments = segments.map(\.proto) }
  }

  func listSegmentMembers(
    request: Rapport_Analytics_V1_ListSegmentMembersRequest, response: RPCWriter<Rapport_Analytics_V1_SegmentMember>,
    context: ServerContext
  ) async throws {
    try await forEachMemberPage(of: request.segmentID) { members in
      try await response.write(contentsOf: members.map(Self.member))
    }
  }

  func listSegmentMemberPages(
    request: Rapport_Analytics_V1_ListSegmentMemberPagesRequest, response: RPCWriter<Rapport_Analytics_V1_SegmentMemberPage>,
    context: ServerContext
  ) async throws {
    let size = try Validate.pageSize(request.pageSize, default: 1_000, max: 10_000)
    var pending: [Rapport_Analytics_V1_SegmentMember] = []
    try await forEachMemberPage(of: request.segmentID) { members in
      pending += members.map(Self.member)
      let full = pending.count / size * size
      guard full > 0 else { return }
      try await response.write(contentsOf: stride(from: 0, to: full, by: size).map { start in
        .with { $0.members = Array(pending[start..<start + size]) }
      })
      pending.removeFirst(full)
    }
    if !pending.isEmpty { try await response.write(.with { $0.members = pending }) }
  }

  /// Reads a segment's members in (since, customer) order, `membersPage` at a time, and hands each page to
  /// `body`; the next page is read while `body` writes this one. NOT_FOUND for an unknown segment.
  private func forEachMemberPage(
    of segmentID: String, _ body: ([(customer: String, since: Date)]) async throws -> Void
  ) async throws {
    let id = try Self.segmentID(segmentID, field: "segment_id")
    guard try await !store.segments(id: id).isEmpty else { throw RPCFailure.notFound("segment", id) }
    @Sendable func page(after last: (customer: String, since: Date)?) async throws -> [(customer: String, since: Date)] {
      guard let last else { return try await store.segmentMembers(id, after: nil, limit: Self.membersPage) }
      guard let customer = UUID(uuidString: last.customer) else { throw RPCFailure.internal("a member id is not a UUID") }
      return try await store.segmentMembers(id, after: (last.since, customer), limit: Self.membersPage)
    }
    var members = try await page(after: nil)
    while !members.isEmpty {
      let last = members.count == Self.membersPage ? members.last : nil
      async let following = last == nil ? [] : page(after: last)
      try await body(members)
      members = try await following
    }
  }

  private static func member(_ member: (customer: String, since: Date)) -> Rapport_Analytics_V1_SegmentMember {
    .with {
      $0.customerID = member.customer
      $0.since = .init(microsecondsOf: member.since)
    }
  }

  /// Members read per query by `ListSegmentMembers` and `ListSegmentMemberPages`.
  static let membersPage = 5_000

  /// A segment id: lower-case letters, digits, '-' and '_', 1 to 64 characters.
  static func segmentID(_ raw: String, field: String = "id") throws -> String {
    guard (1...64).contains(raw.count), raw.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" || $0 == "_" })
    else { throw RPCFailure.invalid(field, "must be 1 to 64 lower-case letters, digits, '-' or '_'") }
    return raw
  }

  /// An IANA time zone name; empty means UTC.
  static func timeZone(_ raw: String) throws -> String {
    let zone = raw.isEmpty ? "UTC" : raw
    guard zone.utf8.count <= 64, TimeZone(identifier: zone) != nil else {
      throw RPCFailure.invalid("time_zone", "is not an IANA time zone name")
    }
    return zone
  }

  /// The range of a sales question: `from` and `to` required and in order, at most `longest` apart; a
  /// known currency; a known channel (unspecified: all).
  static func range(
    from: Google_Protobuf_Timestamp, _ hasFrom: Bool, to: Google_Protobuf_Timestamp, _ hasTo: Bool,
    channel: Rapport_Common_V1_Channel, currency: String, longest: TimeInterval
  ) throws -> AnalyticsStore.SalesRange {
    let (start, end) = try interval(
      from: from, hasFrom, to: to, hasTo, longest: longest, what: "at most 1000 periods; 10 years for products")
    return AnalyticsStore.SalesRange(
      from: start, to: end, currency: try Validate.currency(currency),
      channel: try Validate.known(channel, field: "channel").rawValue)
  }
}
