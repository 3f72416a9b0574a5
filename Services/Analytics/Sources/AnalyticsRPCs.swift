import GRPCCore
import Logging
import RapportCore
import RapportProtos

/// `rapport.analytics.v1.AnalyticsService`.
struct AnalyticsRPCs: Rapport_Analytics_V1_AnalyticsService.SimpleServiceProtocol {
  let store: AnalyticsStore
  let logger: Logger

  func getCustomerMetrics(
    request: Rapport_Analytics_V1_GetCustomerMetricsRequest, context: ServerContext
  ) async throws -> Rapport_Analytics_V1_GetCustomerMetricsResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let metrics = try await store.metrics(customerID: id)
    return .with { $0.metrics = metrics }
  }
}
