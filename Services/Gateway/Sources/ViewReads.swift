import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportProtos

/// The view's four reads, batched under load (`ReadBatcher`): views composed at the same time share one
/// batch call per service (`BatchGetCustomers`, `BatchGetCustomerOrderOverviews`,
/// `BatchGetCustomerSupportOverviews`, `BatchGetCustomerMetrics`) instead of one call each. An idle
/// gateway still makes one call per view and service, at once. Each view keeps its own deadline: a batch
/// call may take as long as the latest deadline among its views, and a view whose deadline passes stops
/// waiting (its section says DEADLINE_EXCEEDED) while the others' batch goes on.
final class ViewReads: Sendable {
  /// One view's read: the customer, its order limit, and when the view stops waiting.
  struct Key: Hashable, Sendable {
    let id: String
    let limit: Int
    let deadline: ContinuousClock.Instant
  }

  let customer: ReadBatcher<Key, Rapport_Customer_V1_GetCustomerResponse>
  let orders: ReadBatcher<Key, Rapport_Order_V1_GetCustomerOrderOverviewResponse>
  let support: ReadBatcher<Key, Rapport_Support_V1_GetCustomerSupportOverviewResponse>
  let metrics: ReadBatcher<Key, Rapport_Analytics_V1_CustomerMetrics>

  /// - Parameters: maxInFlight: batch calls running at once per service before views wait to share the
  ///   next; maxBatch: most views in one batch call (the batch RPCs take up to 100 ids). Measured by hand
  ///   on the demo stack with h2load (views in flight 1 / 4 / 16 / 64): 2 at once gave 120 / 171 / 527 /
  ///   1,297 views/s, 4 gave 127 / 169 / 402 / 1,026 and 8 gave 127 / 191 / 244 / 619; one call per view
  ///   and service (before batching) gave 131 / 183 / 277 / 331.
  init(
    customers: Rapport_Customer_V1_CustomerService.Client<HTTP2ClientTransport.Posix>,
    orders orderClient: Rapport_Order_V1_OrderService.Client<HTTP2ClientTransport.Posix>,
    support supportClient: Rapport_Support_V1_SupportService.Client<HTTP2ClientTransport.Posix>,
    analytics: Rapport_Analytics_V1_AnalyticsService.Client<HTTP2ClientTransport.Posix>,
    maxInFlight: Int = 2, maxBatch: Int = 64
  ) {
    customer = ReadBatcher(maxInFlight: maxInFlight, maxBatch: maxBatch) { keys in
      let ids = Self.distinctIDs(keys)
      let results = try await customers.batchGetCustomers(.with { $0.customerIds = ids }, options: Self.options(keys)).results
      return try Self.answer(keys, ids: ids, results)
    }
    orders = ReadBatcher(maxInFlight: maxInFlight, maxBatch: maxBatch) { keys in
      let ids = Self.distinctIDs(keys)
      let overviews = try await orderClient.batchGetCustomerOrderOverviews(.with {
        $0.customerIds = ids
        $0.recentOrderLimit = Int32(keys.map(\.limit).max() ?? 0)
      }, options: Self.options(keys)).overviews
      // Newest first: a view with a smaller limit takes the front of the longest list asked for.
      var answers = try Self.answer(keys, ids: ids, overviews)
      for (key, overview) in answers where overview.recentOrders.count > key.limit {
        answers[key]?.recentOrders = Array(overview.recentOrders.prefix(key.limit))
      }
      return answers
    }
    support = ReadBatcher(maxInFlight: maxInFlight, maxBatch: maxBatch) { keys in
      let ids = Self.distinctIDs(keys)
      let overviews = try await supportClient.batchGetCustomerSupportOverviews(
        .with { $0.customerIds = ids }, options: Self.options(keys)).overviews
      return try Self.answer(keys, ids: ids, overviews)
    }
    metrics = ReadBatcher(maxInFlight: maxInFlight, maxBatch: maxBatch) { keys in
      let ids = Self.distinctIDs(keys)
      let results = try await analytics.batchGetCustomerMetrics(.with { $0.customerIds = ids }, options: Self.options(keys)).results
      return try Self.answer(keys, ids: ids, results.map(\.metrics))
    }
  }

  static func distinctIDs(_ keys: [Key]) -> [String] {
    var seen: Set<String> = []
    return keys.map(\.id).filter { seen.insert($0).inserted }
  }

  /// The batch call's options: its timeout runs to the latest deadline among its views.
  static func options(_ keys: [Key]) -> CallOptions {
    var options = CallOptions.defaults
    let latest = keys.map(\.deadline).max() ?? .now
    options.timeout = max(latest - .now, .milliseconds(1))
    options.waitForReady = false
    return options
  }

  /// The value a batch answered for one view; nil only if the answer missed it (never, by `answer`).
  static func value<Value>(_ value: Value?, _ section: String) throws -> Value {
    guard let value else { throw RPCError(code: .internalError, message: "\(section) could not be read") }
    return value
  }

  /// Each view's value from a batch answer that holds one value per distinct id, in order.
  static func answer<Value>(_ keys: [Key], ids: [String], _ values: [Value]) throws -> [Key: Value] {
    guard values.count == ids.count else {
      throw RPCError(code: .internalError, message: "a batch answer does not match its request")
    }
    let byID = Dictionary(zip(ids, values), uniquingKeysWith: { first, _ in first })
    var answers: [Key: Value] = [:]
    for key in keys { answers[key] = byID[key.id] }
    return answers
  }
}
