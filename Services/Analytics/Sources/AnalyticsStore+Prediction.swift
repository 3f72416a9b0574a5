import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// BG/NBD, Gamma-Gamma and CLV (docs/ANALYTICS.md, "Prediction"): models are fitted per currency from
/// `analytics.orders` and stored in `analytics.prediction_models`; a customer's prediction is computed
/// when asked, from their orders as they are now and the model in use.
extension AnalyticsStore {
  /// The purchase histories of a currency's customers (or of `customers`) up to `asOf`: orders not
  /// cancelled, net of refunds, grouped by UTC day.
  func histories(currency: String, asOf: Date, customers: [UUID]? = nil) async throws -> [UUID: PurchaseHistory] {
    let end = Self.day(asOf)
    // The whole population: streamed on the connection rather than read to the end first.
    return try await client.withConnection { connection in
      let rows = try await connection.query(
        """
        WITH days AS (
          SELECT customer_id, floor(extract(epoch FROM placed_at) / 86400)::int8 AS day,
                 sum(total_minor - refunded_minor)::int8 AS value
          FROM analytics.orders
          WHERE NOT cancelled AND currency = \(currency)::bpchar AND placed_at <= \(asOf)
            AND (\(customers)::uuid[] IS NULL OR customer_id = ANY(\(customers)::uuid[]))
          GROUP BY customer_id, day)
        SELECT customer_id, count(*) - 1, max(day) - min(day), \(end)::int8 - min(day),
               (sum(value) - (array_agg(value ORDER BY day))[1])::int8
        FROM days GROUP BY customer_id
        """, logger: logger)
      var histories: [UUID: PurchaseHistory] = [:]
      for try await (id, x, tx, T, repeatValue) in rows.decode((UUID, Int64, Int64, Int64, Int64).self) {
        histories[id] = PurchaseHistory(
          x: Double(x), tx: Double(tx), T: Double(T), m: x > 0 ? Double(repeatValue) / Double(x) : 0)
      }
      return histories
    }
  }

  static func day(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 / 86_400).rounded(.down)) }

  /// Fits both models to `currency`'s orders up to `asOf` (now when nil, and then the fit is put in use);
  /// nil when the currency has no order up to then.
  func fitPredictionModel(currency: String, asOf requested: Date?) async throws -> Rapport_Analytics_V1_PredictionModel? {
    let started = ContinuousClock.now
    let now = Date()
    let asOf = requested ?? now
    let histories = Array(try await histories(currency: currency, asOf: asOf).values)
    guard let purchases = ModelFitting.fitBetaGeometric(histories) else { return nil }
    let spend = ModelFitting.fitGammaGamma(histories)
    let seconds = Self.seconds(ContinuousClock.now - started)
    var model = Rapport_Analytics_V1_PredictionModel.with {
      $0.currency = currency
      $0.asOf = .init(microsecondsOf: asOf)
      $0.fittedAt = .init(microsecondsOf: now)
      $0.fitSeconds = seconds
      $0.inUse = requested == nil
      $0.r = purchases.model.r
      $0.alpha = purchases.model.alpha
      $0.a = purchases.model.a
      $0.b = purchases.model.b
      $0.purchaseLogLikelihood = purchases.logLikelihood
      $0.population = Int64(histories.count)
    }
    if let spend {
      model.p = spend.model.p
      model.q = spend.model.q
      model.v = spend.model.v
      model.spendLogLikelihood = spend.logLikelihood
      model.spendPopulation = Int64(histories.filter { $0.x > 0 && $0.m > 0 }.count)
    }
    let stored = model
    defer { scheduled.clear() }
    try await client.transaction(logger: logger) { connection in
      if stored.inUse {
        try await connection.query(
          "DELETE FROM analytics.prediction_models WHERE currency = \(currency)::bpchar AND in_use", logger: logger)
      }
      try await connection.query(
        """
        INSERT INTO analytics.prediction_models (currency, as_of, fitted_at, fit_seconds, in_use, model)
        VALUES (\(currency), \(asOf), \(now), \(seconds), \(stored.inUse), \(try (stored.serializedBytes() as [UInt8]).bytea))
        """, logger: logger)
      // Fits asked for an earlier observation end are kept for reading: the newest 20 per currency.
      try await connection.query(
        """
        DELETE FROM analytics.prediction_models WHERE currency = \(currency)::bpchar AND NOT in_use AND id NOT IN (
          SELECT id FROM analytics.prediction_models WHERE currency = \(currency)::bpchar AND NOT in_use
          ORDER BY id DESC LIMIT 20)
        """, logger: logger)
    }
    return model
  }

  /// Fits every currency that has orders, at now (the scheduled pass). Replicas each fit; predictions
  /// read the newest fit in use.
  func fitAllPredictionModels() async throws {
    let rows = try await client.query(
      "SELECT DISTINCT currency::text FROM analytics.orders WHERE NOT cancelled ORDER BY 1", logger: logger)
    var currencies: [String] = []
    for try await (currency) in rows.decode(String.self) { currencies.append(currency) }
    for currency in currencies {
      _ = try await fitPredictionModel(currency: currency, asOf: nil)
    }
  }

  /// The model in use for `currency`.
  func predictionModel(currency: String) async throws -> Rapport_Analytics_V1_PredictionModel? {
    let rows = try await client.query(
      """
      SELECT model FROM analytics.prediction_models WHERE currency = \(currency)::bpchar AND in_use
      ORDER BY id DESC LIMIT 1
      """, logger: logger)
    for try await (bytes) in rows.decode(ByteBuffer.self) {
      return try Rapport_Analytics_V1_PredictionModel(serializedBytes: Array(buffer: bytes))
    }
    return nil
  }

  /// The customer's prediction in `currency` (default their main currency) at `now`.
  func prediction(
    _ customer: UUID, currency requested: String? = nil, spend known: [Spend]? = nil, now: Date = Date()
  ) async throws -> Rapport_Analytics_V1_CustomerPrediction? {
    let currency: String
    if let requested {
      currency = requested
    } else {
      var spend = known ?? []
      if known == nil { spend = try await spending(customer) }
      guard let main = Self.mainCurrency(spend) else { return nil }
      currency = main.currency
    }
    return try await predictions([currency: [customer]], now: now)[customer]
  }

  /// The predictions of several customers, each in the main currency of their `spend`; one read of the
  /// purchase histories per currency.
  func predictions(spend: [UUID: [Spend]], now: Date = Date()) async throws -> [UUID: Rapport_Analytics_V1_CustomerPrediction] {
    var customers: [String: [UUID]] = [:]
    for (id, spend) in spend {
      if let main = Self.mainCurrency(spend) { customers[main.currency, default: []].append(id) }
    }
    return try await predictions(customers, now: now)
  }

  /// The predictions of `customers` (by currency) with a model in use for their currency.
  private func predictions(_ customers: [String: [UUID]], now: Date) async throws -> [UUID: Rapport_Analytics_V1_CustomerPrediction] {
    var predictions: [UUID: Rapport_Analytics_V1_CustomerPrediction] = [:]
    for (currency, ids) in customers {
      guard let model = try await scheduled.model(currency, { try await predictionModel(currency: currency) }) else { continue }
      for (id, history) in try await histories(currency: currency, asOf: now, customers: ids) {
        predictions[id] = Self.prediction(history, model: model, discountRate: monthlyDiscountRate)
      }
    }
    return predictions
  }

  static func prediction(
    _ history: PurchaseHistory, model: Rapport_Analytics_V1_PredictionModel, discountRate: Double
  ) -> Rapport_Analytics_V1_CustomerPrediction {
    let purchases = BetaGeometric(r: model.r, alpha: model.alpha, a: model.a, b: model.b)
    var prediction = Rapport_Analytics_V1_CustomerPrediction()
    prediction.currency = model.currency
    prediction.frequency = Int64(history.x)
    prediction.recencyDays = Int64(history.tx)
    prediction.ageDays = Int64(history.T)
    prediction.averageRepeatSpendMinor = history.m
    prediction.probabilityAlive = purchases.probabilityAlive(history)
    prediction.churnProbability = 1 - prediction.probabilityAlive
    prediction.expectedPurchases12M = purchases.expectedPurchases(in: 12 * daysPerMonth, history)
    prediction.monthlyDiscountRate = discountRate
    prediction.modelFittedAt = model.fittedAt
    if model.q > 1 {
      let spend = GammaGamma(p: model.p, q: model.q, v: model.v)
      prediction.expectedSpendMinor = spend.expectedSpend(history)
      prediction.clv12MMinor = lifetimeValue(purchases, spend, history, months: 12, discountRate: discountRate)
    }
    prediction.expectedSpend = .money(Int64(prediction.expectedSpendMinor.rounded()), model.currency)
    prediction.clv12M = .money(Int64(prediction.clv12MMinor.rounded()), model.currency)
    return prediction
  }

  static func seconds(_ duration: Duration) -> Double {
    let (seconds, attoseconds) = duration.components
    return Double(seconds) + Double(attoseconds) / 1e18
  }
}
