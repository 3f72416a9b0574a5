import Foundation

/// Maximum-likelihood fits of BG/NBD and Gamma-Gamma: the negative mean log-likelihood is minimised over
/// the logarithms of the parameters (so they stay positive) with Nelder–Mead, restarted from its own
/// result until a restart no longer improves it, as `lifetimes` does with SciPy's Nelder–Mead.
enum ModelFitting {
  struct Fit<Model: Sendable>: Sendable {
    let model: Model
    /// Total log-likelihood over the population at `model`.
    let logLikelihood: Double
    let evaluations: Int
  }

  /// Identical histories are weighted once (integer days make most of a large population repeat).
  static func weighted(_ histories: [PurchaseHistory]) -> [(PurchaseHistory, Double)] {
    var counts: [PurchaseHistory: Double] = [:]
    for history in histories { counts[history, default: 0] += 1 }
    return counts.sorted { ($0.key.x, $0.key.tx, $0.key.T, $0.key.m) < ($1.key.x, $1.key.tx, $1.key.T, $1.key.m) }
  }

  static func fitBetaGeometric(_ histories: [PurchaseHistory]) -> Fit<BetaGeometric>? {
    guard !histories.isEmpty else { return nil }
    let groups = weighted(histories)
    let total = Double(histories.count)
    func model(_ θ: [Double]) -> BetaGeometric { .init(r: exp(θ[0]), alpha: exp(θ[1]), a: exp(θ[2]), b: exp(θ[3])) }
    let (best, evaluations) = minimize(start: [0, 0, 0, 0]) { θ in
      let candidate = model(θ)
      var sum = 0.0
      for (history, weight) in groups { sum += weight * candidate.logLikelihood(history) }
      return -sum / total
    }
    let fitted = model(best.point)
    return Fit(model: fitted, logLikelihood: -best.value * total, evaluations: evaluations)
  }

  /// Over customers with repeat purchases of positive mean value (Gamma-Gamma's support).
  static func fitGammaGamma(_ histories: [PurchaseHistory]) -> Fit<GammaGamma>? {
    let repeaters = histories.filter { $0.x > 0 && $0.m > 0 }
    guard !repeaters.isEmpty else { return nil }
    let groups = weighted(repeaters.map { PurchaseHistory(x: $0.x, tx: 0, T: 0, m: $0.m) })
    let total = Double(repeaters.count)
    func model(_ θ: [Double]) -> GammaGamma { .init(p: exp(θ[0]), q: exp(θ[1]), v: exp(θ[2])) }
    let (best, evaluations) = minimize(start: [0, 0, 0]) { θ in
      let candidate = model(θ)
      var sum = 0.0
      for (history, weight) in groups { sum += weight * candidate.logLikelihood(history) }
      return -sum / total
    }
    return Fit(model: model(best.point), logLikelihood: -best.value * total, evaluations: evaluations)
  }

  struct Point { var point: [Double]; var value: Double }

  /// Nelder–Mead (reflection 1, expansion 2, contraction ½, shrink ½) from `start` with unit steps,
  /// restarted from the best vertex until a restart gains less than 1e-12. Non-finite values count as +∞;
  /// coordinates are kept within ±30 (parameters between e⁻³⁰ and e³⁰).
  static func minimize(start: [Double], _ f: ([Double]) -> Double) -> (Point, Int) {
    var evaluations = 0
    func value(_ θ: [Double]) -> Double {
      evaluations += 1
      guard θ.allSatisfy({ abs($0) <= 30 }) else { return .infinity }
      let y = f(θ)
      return y.isFinite ? y : .infinity
    }
    var best = Point(point: start, value: value(start))
    for _ in 0..<20 {
      let next = nelderMead(from: best.point, step: 1, value)
      let gain = best.value - next.value
      if next.value < best.value { best = next }
      if !(gain > 1e-12) { break }
    }
    return (best, evaluations)
  }

  private static func nelderMead(from start: [Double], step: Double, _ f: ([Double]) -> Double) -> Point {
    let n = start.count
    var simplex = [Point(point: start, value: f(start))]
    for i in 0..<n {
      var vertex = start
      vertex[i] += step
      simplex.append(Point(point: vertex, value: f(vertex)))
    }
    func combine(_ u: [Double], _ v: [Double], _ t: Double) -> [Double] { zip(u, v).map { $0 + t * ($1 - $0) } }
    for _ in 0..<(2_000 * n) {
      simplex.sort { $0.value < $1.value }
      let spread = simplex[n].value - simplex[0].value
      let size = (1...n).map { i in zip(simplex[i].point, simplex[0].point).map { abs($0 - $1) }.max() ?? 0 }.max() ?? 0
      if spread.isFinite, spread <= 1e-13 * (1 + abs(simplex[0].value)), size <= 1e-9 { break }
      let centroid = (0..<n).map { j in simplex[0..<n].reduce(0) { $0 + $1.point[j] } / Double(n) }
      let worst = simplex[n]
      let reflected = combine(centroid, worst.point, -1)
      let fr = f(reflected)
      if fr < simplex[0].value {
        let expanded = combine(centroid, worst.point, -2)
        let fe = f(expanded)
        simplex[n] = fe < fr ? Point(point: expanded, value: fe) : Point(point: reflected, value: fr)
      } else if fr < simplex[n - 1].value {
        simplex[n] = Point(point: reflected, value: fr)
      } else {
        let outside = fr < worst.value
        let contracted = combine(centroid, outside ? reflected : worst.point, 0.5)
        let fc = f(contracted)
        if fc < (outside ? fr : worst.value) {
          simplex[n] = Point(point: contracted, value: fc)
        } else {
          for i in 1...n {
            let shrunk = combine(simplex[0].point, simplex[i].point, 0.5)
            simplex[i] = Point(point: shrunk, value: f(shrunk))
          }
        }
      }
    }
    return simplex.min { $0.value < $1.value }!
  }
}
