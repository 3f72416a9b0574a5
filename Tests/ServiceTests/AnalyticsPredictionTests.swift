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

/// BG/NBD and Gamma-Gamma (docs/ANALYTICS.md, "Prediction"): populations drawn from known parameters
/// are fitted back. The closed forms are compared with the `lifetimes` package end to end
/// (`Tests/EndToEndTests/interop/clv_lifetimes.py`).
@Suite(.hangLimit) struct AnalyticsPredictionTests {
  typealias Seeded = SeededRandom

  @Test func aPopulationDrawnFromKnownBgNbdParametersIsFittedBackWithinTenPercent() {
    let truth = BetaGeometric(r: 0.6, alpha: 20, a: 0.8, b: 2.5)
    var random = Seeded(seed: 2026)
    let histories = (0..<20_000).map { _ in
      let T = Double.random(in: 60...730, using: &random)
      let rate = random.gamma(shape: truth.r, scale: 1 / truth.alpha)
      let dropout = random.beta(truth.a, truth.b)
      var t = 0.0, x = 0.0, tx = 0.0
      while true {
        t += -log(random.uniform()) / rate
        if t > T { break }
        x += 1
        tx = t
        if random.uniform() < dropout { break }
      }
      return PurchaseHistory(x: x, tx: tx, T: T)
    }
    let fit = try! #require(ModelFitting.fitBetaGeometric(histories))
    let fitted = fit.model
    print("BG/NBD fitted to 20,000 drawn histories: \(fitted) (truth \(truth)), \(fit.evaluations) evaluations")
    for (name, got, want) in [
      ("r", fitted.r, truth.r), ("alpha", fitted.alpha, truth.alpha), ("a", fitted.a, truth.a), ("b", fitted.b, truth.b),
    ] {
      #expect(abs(got - want) / want < 0.10, "\(name): fitted \(got), drawn from \(want)")
    }
    // The maximum is a maximum: the truth and nearby points are no likelier.
    let atTruth = histories.reduce(0) { $0 + truth.logLikelihood($1) }
    #expect(fit.logLikelihood >= atTruth)
    var nudged = fitted
    nudged.r *= 1.01
    #expect(fit.logLikelihood >= histories.reduce(0) { $0 + nudged.logLikelihood($1) })
  }

  @Test func spendDrawnFromKnownGammaGammaParametersIsFittedBackWithinFifteenPercent() {
    let truth = GammaGamma(p: 6, q: 4, v: 1_500)
    var random = Seeded(seed: 14)
    let histories = (0..<20_000).map { _ in
      let x = Double(Int.random(in: 1...8, using: &random))
      let nu = random.gamma(shape: truth.q, scale: 1 / truth.v)
      let values = (0..<Int(x)).map { _ in random.gamma(shape: truth.p, scale: 1 / nu) }
      return PurchaseHistory(x: x, tx: 1, T: 1, m: values.reduce(0, +) / x)
    }
    let fit = try! #require(ModelFitting.fitGammaGamma(histories))
    print("Gamma-Gamma fitted to 20,000 drawn customers: \(fit.model) (truth \(truth)), \(fit.evaluations) evaluations")
    for (name, got, want) in [("p", fit.model.p, truth.p), ("q", fit.model.q, truth.q), ("v", fit.model.v, truth.v)] {
      #expect(abs(got - want) / want < 0.15, "\(name): fitted \(got), drawn from \(want)")
    }
    #expect(fit.logLikelihood >= histories.reduce(0) { $0 + truth.logLikelihood($1) })
  }

  @Test func closedFormsBehaveAtTheirLimits() {
    let model = BetaGeometric(r: 0.24, alpha: 4.4, a: 0.79, b: 2.4)
    // No repeat purchase: certainly alive (BG/NBD drops out only after a repeat purchase).
    #expect(model.probabilityAlive(PurchaseHistory(x: 0, tx: 0, T: 100)) == 1)
    // A long silence after frequent buying makes death likely; buying yesterday makes it unlikely.
    let silent = model.probabilityAlive(PurchaseHistory(x: 10, tx: 50, T: 400))
    let recent = model.probabilityAlive(PurchaseHistory(x: 10, tx: 399, T: 400))
    #expect(silent < 0.1 && recent > 0.9)
    // Expected purchases grow with the horizon and vanish at zero.
    let h = PurchaseHistory(x: 3, tx: 200, T: 400)
    #expect(model.expectedPurchases(in: 0, h) == 0)
    #expect(model.expectedPurchases(in: 30, h) < model.expectedPurchases(in: 360, h))
    // The value lifetimes gives for these (0.9106546603318133 in 365 days, seen with lifetimes 0.11.3).
    #expect(abs(model.expectedPurchases(in: 365, h) - 0.9106546603318133) < 1e-9)
    #expect(abs(model.probabilityAlive(h) - 0.37909102) < 1e-8)
    // Gamma-Gamma: no repeat purchase → the population mean.
    let spend = GammaGamma(p: 6, q: 4, v: 15)
    #expect(spend.expectedSpend(PurchaseHistory(x: 0, tx: 0, T: 0, m: 0)) == 15 * 6 / 3)
  }

  /// Draws `count` BG/NBD histories in whole days with Gamma-Gamma values in whole minor units.
  static func population(_ count: Int, seed: UInt64) -> [PurchaseHistory] {
    let purchases = BetaGeometric(r: 0.6, alpha: 20, a: 0.8, b: 2.5), spend = GammaGamma(p: 6, q: 4, v: 15_000)
    var random = Seeded(seed: seed)
    return (0..<count).map { _ in
      let T = Double(Int.random(in: 30...730, using: &random))
      let rate = random.gamma(shape: purchases.r, scale: 1 / purchases.alpha)
      let dropout = random.beta(purchases.a, purchases.b)
      let nu = random.gamma(shape: spend.q, scale: 1 / spend.v)
      var days: Set<Double> = [], t = 0.0, tx = 0.0, total = 0.0
      while true {
        t += -log(random.uniform()) / rate
        if t >= T + 1 { break }
        let day = t.rounded(.down)
        if day > 0, days.insert(day).inserted { total += random.gamma(shape: spend.p, scale: 1 / nu).rounded() }
        tx = max(tx, day)
        if random.uniform() < dropout { break }
      }
      let x = Double(days.count)
      return PurchaseHistory(x: x, tx: x > 0 ? tx : 0, T: T, m: x > 0 ? total / x : 0)
    }
  }

  /// Rapport's fit and closed forms against the `lifetimes` package (PyPI, installed by
  /// scripts/install-deps): Tests/EndToEndTests/interop/clv_lifetimes.py scores both.
  @Test func closedFormsMatchLifetimesAndTheFitIsAtLeastAsLikely() async throws {
    let histories = Self.population(3_000, seed: 7)
    let purchases = try #require(ModelFitting.fitBetaGeometric(histories)).model
    let spend = try #require(ModelFitting.fitGammaGamma(histories)).model
    let model = Rapport_Analytics_V1_PredictionModel.with {
      $0.currency = "EUR"
      ($0.r, $0.alpha, $0.a, $0.b) = (purchases.r, purchases.alpha, purchases.a, purchases.b)
      ($0.p, $0.q, $0.v) = (spend.p, spend.q, spend.v)
    }
    let sample = Array(histories.prefix(300))
    let predictions = sample.map { AnalyticsStore.prediction($0, model: model, discountRate: 0.01) }
    let request: [String: Any] = [
      "histories": histories.map { [$0.x, $0.tx, $0.T, $0.m] },
      "model": ["r": model.r, "alpha": model.alpha, "a": model.a, "b": model.b, "p": model.p, "q": model.q, "v": model.v],
      "predictions": predictions.map { [$0.probabilityAlive, $0.expectedPurchases12M, $0.expectedSpendMinor, $0.clv12MMinor] },
      "discount_rate": 0.01,
    ]
    let path = NSTemporaryDirectory() + "clv-\(UUID().uuidString).json"
    try JSONSerialization.data(withJSONObject: request).write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("EndToEndTests/interop/clv_lifetimes.py").path
    let output = try await Shell.run(try Shell.which("python3"), [script, path])
    let line = output.split(separator: "\n").last.map(String.init) ?? ""
    let answer = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(output)")
    print("lifetimes reference: \(line)")
    let errors = try #require(answer["max_relative_error"] as? [String: Double])
    #expect(errors.count == 4)
    for (name, error) in errors { #expect(error < 1e-6, "\(name) differs from lifetimes by \(error) (relative)") }
    // Both fits scored by lifetimes' own likelihood: Rapport's is no less likely (to 1e-6 per customer),
    // and the parameters agree within 1 %.
    let ll = try #require(answer["log_likelihood"] as? [String: Double])
    let n = Double(histories.count)
    #expect(ll["rapport_bgnbd"]! >= ll["lifetimes_bgnbd"]! - 1e-6 * n)
    #expect(ll["rapport_gg"]! >= ll["lifetimes_gg"]! - 1e-6 * n)
    let theirs = try #require(answer["lifetimes_fit"] as? [String: Double])
    for (name, ours) in [
      ("r", model.r), ("alpha", model.alpha), ("a", model.a), ("b", model.b), ("p", model.p), ("q", model.q), ("v", model.v),
    ] {
      #expect(abs(ours - theirs[name]!) / theirs[name]! < 0.01, "\(name): Rapport \(ours), lifetimes \(theirs[name]!)")
    }
  }

  // MARK: - From events, through the service

  /// 40 customers in EUR with purchase days spread over the last 200 days, and the customer the test
  /// follows: orders 100 days ago (two that day), 90 (1 000 of 3 000 refunded) and 60 days ago, and one
  /// 50 days ago that was cancelled: 2 repeat days, 40 days from first to last, 100 days old, mean repeat
  /// value (2 000 + 4 000) / 2.
  @Test func predictionsComeFromTheCustomersNetHistoryAndTheModelInUse() async throws {
    try await AnalyticsRfmTests.withService { address, events, _ in
      let midnight = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 86_400).rounded(.down) * 86_400)
      @Sendable func daysAgo(_ days: Double, hour: Double = 10) -> Date { midnight.addingTimeInterval(-days * 86_400 + hour * 3_600) }
      func placed(_ order: UUID, _ customer: UUID, _ amount: Int64, _ at: Date, _ currency: String = "EUR")
        -> Rapport_Events_V1_Event.OneOf_Payload
      {
        .orderPlaced(.with {
          $0.orderID = order.uuidString
          $0.customerID = customer.uuidString
          $0.total = .money(amount, currency)
          $0.placedAt = .init(microsecondsOf: at)
        })
      }
      var payloads: [Rapport_Events_V1_Event.OneOf_Payload] = []
      let population = (0..<40).map { _ in UUID() }
      for i in 0..<40 {
        let customer = population[i]
        for k in 0...(i % 5) { payloads.append(placed(UUID(), customer, Int64(1_000 + 100 * i), daysAgo(Double(200 - i - k * (5 + i % 11))))) }
      }
      let followed = UUID(), refunded = UUID(), cancelled = UUID()
      payloads += [
        placed(UUID(), followed, 5_000, daysAgo(100)), placed(UUID(), followed, 1_000, daysAgo(100, hour: 15)),
        placed(refunded, followed, 3_000, daysAgo(90)), placed(UUID(), followed, 4_000, daysAgo(60)),
        placed(cancelled, followed, 9_000, daysAgo(50)), placed(UUID(), UUID(), 700, daysAgo(20), "GBP"),
        .orderRefunded(.with {
          $0.orderID = refunded.uuidString
          $0.amountRefunded = .money(1_000, "EUR")
        }),
        .orderCancelled(.with { $0.orderID = cancelled.uuidString }),
      ]
      for payload in payloads { try await events.apply("order", payload) }
      let store = events.store
      let history = try #require(try await store.histories(currency: "EUR", asOf: Date(), customers: [followed])[followed])
      #expect(history == PurchaseHistory(x: 2, tx: 40, T: 100, m: 3_000))

      try await withClient(to: address) { client in
        let api = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client)
        // No model without orders in the currency (the scheduled fit may have run at start already).
        #expect(try await !api.getPredictionModel(.with { $0.currency = "USD" }).hasModel)
        #expect(try await !api.getCustomerPrediction(.with {
          $0.customerID = followed.uuidString
          $0.currency = "USD"
        }).hasPrediction)
        let fitted = try await api.fitPredictionModel(.with { $0.currency = "EUR" }).model
        #expect(fitted.inUse && fitted.population == 41 && fitted.spendPopulation > 0 && fitted.fitSeconds > 0)
        #expect([fitted.r, fitted.alpha, fitted.a, fitted.b, fitted.p, fitted.q, fitted.v].allSatisfy { $0 > 0 && $0.isFinite })
        #expect(try await api.getPredictionModel(.with { $0.currency = "EUR" }).model == fitted)
        // The customer's prediction is the closed forms at their history and the model in use.
        let prediction = try await api.getCustomerPrediction(.with { $0.customerID = followed.uuidString }).prediction
        let expected = AnalyticsStore.prediction(history, model: fitted, discountRate: AnalyticsApp.defaultMonthlyDiscountRate)
        #expect(prediction == expected)
        #expect(prediction.probabilityAlive > 0 && prediction.probabilityAlive < 1 && prediction.clv12MMinor > 0)
        #expect(abs(prediction.churnProbability + prediction.probabilityAlive - 1) < 1e-12)
        let metrics = try await api.getCustomerMetrics(.with { $0.customerID = followed.uuidString }).metrics
        #expect(metrics.prediction == expected)
        // A batch reads the histories once per currency; every customer's prediction is the one asked alone
        // (none for an unknown customer).
        let asked = [followed, UUID()] + population.prefix(10)
        let batch = try await api.batchGetCustomerMetrics(.with { $0.customerIds = asked.map(\.uuidString) }).results
        #expect(batch.count == asked.count && batch[0].metrics.prediction == expected && !batch[1].metrics.hasPrediction)
        for (id, result) in zip(asked.dropFirst(2), batch.dropFirst(2)) {
          let alone = try await api.getCustomerPrediction(.with { $0.customerID = id.uuidString }).prediction
          #expect(result.metrics.hasPrediction && result.metrics.prediction == alone)
        }
        // A fit at an earlier end of observation is returned and kept, not put in use: 150 days ago the
        // followed customer had not bought yet; the 40 others had (their first orders are 161–200 days old).
        let earlier = try await api.fitPredictionModel(.with {
          $0.currency = "EUR"
          $0.asOf = .init(microsecondsOf: daysAgo(150, hour: 0))
        }).model
        #expect(!earlier.inUse && earlier.population == 40 && earlier.asOf == .init(microsecondsOf: daysAgo(150, hour: 0)))
        #expect(try await api.getPredictionModel(.with { $0.currency = "EUR" }).model == fitted)
        // Bad input.
        await expectStatus(.invalidArgument, field: "currency") { try await api.fitPredictionModel(.with { $0.currency = "EURO" }) }
        await expectStatus(.invalidArgument, field: "as_of") {
          try await api.fitPredictionModel(.with {
            $0.currency = "EUR"
            $0.asOf = .init(microsecondsOf: Date().addingTimeInterval(3_600))
          })
        }
        await expectStatus(.failedPrecondition) { try await api.fitPredictionModel(.with { $0.currency = "JPY" }) }
        await expectStatus(.invalidArgument, field: "customer_id") { try await api.getCustomerPrediction(.with { $0.customerID = "x" }) }
        await expectStatus(.invalidArgument, field: "currency") {
          try await api.getCustomerPrediction(.with {
            $0.customerID = followed.uuidString
            $0.currency = "eu\0"
          })
        }
        #expect(try await !api.getCustomerPrediction(.with { $0.customerID = UUID().uuidString }).hasPrediction)
      }
    }
  }
}
