import Foundation

/// One customer's purchase history in one currency, as the BG/NBD and Gamma-Gamma models read it
/// (docs/ANALYTICS.md, "Prediction"). Times are in days; purchases on the same UTC day count as one.
struct PurchaseHistory: Sendable, Hashable {
  /// Repeat purchases: purchase days after the first one.
  var x: Double
  /// Days from the first purchase to the last.
  var tx: Double
  /// Days from the first purchase to the end of observation.
  var T: Double
  /// Mean net value of the repeat purchase days, in minor units (0 without repeat purchases).
  var m: Double = 0
}

/// BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way"): while alive, a customer
/// buys as a Poisson process of rate λ ~ Gamma(r, α); after each purchase they drop out with probability
/// p ~ Beta(a, b). The formulas are those of the `lifetimes` package (`BetaGeoFitter`).
struct BetaGeometric: Sendable, Equatable {
  var r: Double, alpha: Double, a: Double, b: Double

  /// ln L of one history.
  func logLikelihood(_ h: PurchaseHistory) -> Double {
    let x = h.x
    let a1 = lgamma(r + x) - lgamma(r) + r * log(alpha)
    let a2 = lgamma(a + b) + lgamma(b + x) - lgamma(b) - lgamma(a + b + x)
    let a3 = -(r + x) * log(alpha + h.T)
    guard x > 0 else { return a1 + a2 + a3 }
    let a4 = log(a) - log(b + x - 1) - (r + x) * log(h.tx + alpha)
    let top = max(a3, a4)
    return a1 + a2 + top + log(exp(a3 - top) + exp(a4 - top))
  }

  /// P(still alive at T | history).
  func probabilityAlive(_ h: PurchaseHistory) -> Double {
    guard h.x > 0 else { return 1 }
    let logRatio = (r + h.x) * log((alpha + h.T) / (alpha + h.tx)) + log(a / (b + h.x - 1))
    return 1 / (1 + exp(logRatio))
  }

  /// E[purchases in (T, T + t] | history].
  func expectedPurchases(in t: Double, _ h: PurchaseHistory) -> Double {
    guard t > 0 else { return 0 }
    let x = h.x
    let ha = r + x, hb = b + x, hc = a + b + x - 1
    let z = t / (alpha + h.T + t)
    var lnHyp = log(hypergeometric2F1(ha, hb, hc, z))
    if !lnHyp.isFinite {
      // Euler's transformation, as lifetimes does when the direct series overflows.
      lnHyp = log(hypergeometric2F1(hc - ha, hc - hb, hc, z)) + (hc - ha - hb) * log(1 - z)
    }
    let first = (a + b + x - 1) / (a - 1)
    let second = 1 - exp(lnHyp + (r + x) * log((alpha + h.T) / (alpha + t + h.T)))
    let denominator = 1 + (x > 0 ? (a / (b + x - 1)) * pow((alpha + h.T) / (alpha + h.tx), r + x) : 0)
    return first * second / denominator
  }
}

/// Gamma-Gamma (Fader, Hardie & Lee 2005, "RFM and CLV"): a customer's purchase values are Gamma(p, ν)
/// with ν ~ Gamma(q, v); independent of the purchase process. Formulas as `lifetimes`' `GammaGammaFitter`.
struct GammaGamma: Sendable, Equatable {
  var p: Double, q: Double, v: Double

  /// ln L of one customer's mean repeat-purchase value `m` over `x` > 0 purchases (m > 0).
  func logLikelihood(_ h: PurchaseHistory) -> Double {
    let x = h.x, m = h.m
    return lgamma(p * x + q) - lgamma(p * x) - lgamma(q) + q * log(v) + (p * x - 1) * log(m) + p * x * log(x)
      - (p * x + q) * log(x * m + v)
  }

  /// E[value of a purchase | history]: the population mean v·p/(q − 1) shrunk towards the customer's own
  /// mean by their number of repeat purchases. Needs q > 1.
  func expectedSpend(_ h: PurchaseHistory) -> Double {
    let weight = p * h.x / (p * h.x + q - 1)
    return (1 - weight) * (v * p / (q - 1)) + weight * h.m
  }
}

/// Customer lifetime value over `months` months of 30 days, discounted monthly at `discountRate`:
/// Σᵢ spend · (E[N(30i)] − E[N(30(i−1))]) / (1 + d)ⁱ, as `lifetimes`' `customer_lifetime_value`.
func lifetimeValue(
  _ purchases: BetaGeometric, _ spend: GammaGamma, _ h: PurchaseHistory, months: Int = 12, discountRate: Double
) -> Double {
  let perPurchase = spend.expectedSpend(h)
  var value = 0.0, previous = 0.0
  for month in 1...max(1, months) {
    let cumulative = purchases.expectedPurchases(in: Double(month) * daysPerMonth, h)
    value += perPurchase * (cumulative - previous) / pow(1 + discountRate, Double(month))
    previous = cumulative
  }
  return value
}

/// The prediction horizon's month, as in `lifetimes` (`freq="D"`).
let daysPerMonth = 30.0

/// Gauss's hypergeometric function ₂F₁(a, b; c; z) for 0 ≤ z < 1, summed as its power series until a
/// term no longer changes the sum (c > 0).
func hypergeometric2F1(_ a: Double, _ b: Double, _ c: Double, _ z: Double) -> Double {
  var sum = 1.0, term = 1.0
  for n in 0..<1_000_000 {
    let k = Double(n)
    term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
    let next = sum + term
    if !next.isFinite { return next }
    if next == sum, n > 2 { return next }
    sum = next
  }
  return sum
}
