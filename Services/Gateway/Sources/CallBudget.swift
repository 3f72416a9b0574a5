import GRPCCore

/// The time a request may take: the caller's `grpc-timeout`, capped, or a default when it sent none.
struct CallBudget: Sendable {
  let deadline: ContinuousClock.Instant
  /// Kept back from the upstream calls for composing and sending the response: 15 % of the budget,
  /// between 20 ms and 2 s (200 ms of a 2 s budget was sometimes not enough on a loaded 2-core machine, and
  /// a 500 ms cap left a 10 s view too little room when the request had queued before its handler ran:
  /// the budget starts when the handler does, the caller's deadline when it sent the request).
  let margin: Duration

  init(metadata: Metadata, default fallback: Duration, maximum: Duration) {
    let requested = metadata[stringValues: "grpc-timeout"].first(where: { _ in true }).flatMap(Self.parse)
    let total = min(requested ?? fallback, maximum)
    deadline = ContinuousClock.now + total
    margin = min(max(total * 15 / 100, .milliseconds(20)), .seconds(2))
  }

  /// What remains for upstream calls.
  func remaining() -> Duration {
    max(deadline - ContinuousClock.now - margin, .milliseconds(1))
  }

  /// Parses a `grpc-timeout` value: digits (the spec says at most 8; longer values are accepted) and a
  /// unit (H, M, S, m, u, n).
  static func parse(_ text: String) -> Duration? {
    guard let unit = text.last, text.count >= 2, text.count <= 19, let value = Int64(text.dropLast()), value >= 0
    else { return nil }
    switch unit {
    case "H": return .seconds(value * 3600)
    case "M": return .seconds(value * 60)
    case "S": return .seconds(value)
    case "m": return .milliseconds(value)
    case "u": return .microseconds(value)
    case "n": return .nanoseconds(value)
    default: return nil
    }
  }
}
