import GRPCCore

/// The time a request may take: the caller's `grpc-timeout`, capped, or a default when it sent none.
struct CallBudget: Sendable {
  let deadline: ContinuousClock.Instant

  init(metadata: Metadata, default fallback: Duration, maximum: Duration) {
    let requested = metadata[stringValues: "grpc-timeout"].first(where: { _ in true }).flatMap(Self.parse)
    deadline = ContinuousClock.now + min(requested ?? fallback, maximum)
  }

  /// What remains, less a margin for composing and sending the response.
  func remaining(margin: Duration = .milliseconds(5)) -> Duration {
    max(deadline - ContinuousClock.now - margin, .milliseconds(1))
  }

  /// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
  static func parse(_ text: String) -> Duration? {
    guard let unit = text.last, text.count >= 2, text.count <= 9, let value = Int64(text.dropLast()), value >= 0
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
