import Foundation
import RapportProtos
import Synchronization

/// What per-customer reads score against and that changes only on a schedule or on demand — the RFM
/// quintile edges and each currency's model in use — kept in memory for up to `ttl`, so
/// `GetCustomerMetrics` (and the view) does not read them again on every call. A change made in this
/// process clears them at once; one made by another replica is seen within `ttl`.
final class ScheduledValues: Sendable {
  let ttl: Duration
  private let edges = Mutex<(AnalyticsStore.RfmEdges, ContinuousClock.Instant)?>(nil)
  private let models = Mutex<[String: (Rapport_Analytics_V1_PredictionModel?, ContinuousClock.Instant)]>([:])

  init(ttl: Duration = .seconds(5)) { self.ttl = ttl }

  func edges(_ load: () async throws -> AnalyticsStore.RfmEdges) async throws -> AnalyticsStore.RfmEdges {
    let now = ContinuousClock.now
    if let (cached, at) = edges.withLock({ $0 }), now - at < ttl { return cached }
    let loaded = try await load()
    edges.withLock { $0 = (loaded, now) }
    return loaded
  }

  func model(
    _ currency: String, _ load: () async throws -> Rapport_Analytics_V1_PredictionModel?
  ) async throws -> Rapport_Analytics_V1_PredictionModel? {
    let now = ContinuousClock.now
    if let (cached, at) = models.withLock({ $0[currency] }), now - at < ttl { return cached }
    let loaded = try await load()
    models.withLock { $0[currency] = (loaded, now) }
    return loaded
  }

  func clear() {
    edges.withLock { $0 = nil }
    models.withLock { $0.removeAll() }
  }
}
