import Foundation

/// A reproducible random number generator (SplitMix64) with the draws synthetic populations need: the
/// same seed gives the same population on every machine (`rapport seed`, the prediction tests).
public struct SeededRandom: RandomNumberGenerator, Sendable {
  public var state: UInt64

  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Uniform in (0, 1).
  public mutating func uniform() -> Double { Double.random(in: Double.ulpOfOne..<1, using: &self) }

  /// Standard normal (Box–Muller).
  public mutating func normal() -> Double { sqrt(-2 * log(uniform())) * cos(2 * .pi * uniform()) }

  /// Exponential with the given rate.
  public mutating func exponential(rate: Double) -> Double { -log(uniform()) / rate }

  /// Gamma(shape, scale) by Marsaglia & Tsang (shape < 1 boosted by U^(1/shape)).
  public mutating func gamma(shape: Double, scale: Double) -> Double {
    if shape < 1 { return gamma(shape: shape + 1, scale: scale) * pow(uniform(), 1 / shape) }
    let d = shape - 1.0 / 3, c = 1 / sqrt(9 * d)
    while true {
      var x = 0.0, v = 0.0
      repeat {
        x = normal()
        v = 1 + c * x
      } while v <= 0
      v = v * v * v
      if log(uniform()) < 0.5 * x * x + d - d * v + d * log(v) { return d * v * scale }
    }
  }

  public mutating func beta(_ a: Double, _ b: Double) -> Double {
    let x = gamma(shape: a, scale: 1), y = gamma(shape: b, scale: 1)
    return x / (x + y)
  }
}
