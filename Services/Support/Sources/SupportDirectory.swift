import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportCore
import RapportProtos

/// What the support service asks the customer and order services when a ticket is opened: that the
/// customer exists (and its B2B tier), and that the order exists and is the customer's.
struct SupportDirectory: Sendable {
  let customers: Rapport_Customer_V1_CustomerService.Client<HTTP2ClientTransport.Posix>
  let orders: Rapport_Order_V1_OrderService.Client<HTTP2ClientTransport.Posix>?
  let timeout: Duration
  let logger: Logger

  /// A confirmed customer: the id to file the ticket under (a merged customer's survivor) and the tier
  /// of its first company, if any.
  struct Customer: Sendable {
    var id: UUID
    var tier: String?
  }

  func customer(_ id: UUID) async throws -> Customer {
    let upstream = Upstream("customer service", timeout: timeout, logger: logger)
    let raw = id.uuidString.lowercased()
    let found = try await upstream.call("customer", id: raw, field: "customer_id") { options in
      try await customers.getCustomer(.with { $0.customerID = raw }, options: options).customer
    }
    guard found.state != .erased else { throw RPCFailure.failedPrecondition("the customer was erased") }
    guard let canonical = UUID(uuidString: found.id) else { throw RPCFailure.internal("customer without id") }
    guard let link = found.companies.first else { return Customer(id: canonical, tier: nil) }
    let company = try await upstream.call("company", id: link.companyID, field: "customer_id") { options in
      try await customers.getCompany(.with { $0.companyID = link.companyID }, options: options).company
    }
    return Customer(id: canonical, tier: company.tier.isEmpty ? nil : company.tier)
  }

  /// Confirms the order exists and belongs to one of `customers` (the id the client gave and its
  /// survivor after a merge); INVALID_ARGUMENT naming `order_id` otherwise.
  func confirm(order id: UUID, of customers: Set<UUID>) async throws {
    guard let orders else { throw RPCFailure.unavailable("order service unavailable; nothing was stored, retry later") }
    let raw = id.uuidString.lowercased()
    let order = try await Upstream("order service", timeout: timeout, logger: logger).call(
      "order", id: raw, field: "order_id"
    ) { options in
      try await orders.getOrder(.with { $0.orderID = raw }, options: options).order
    }
    guard let owner = UUID(uuidString: order.customerID), customers.contains(owner) else {
      throw RPCFailure.invalid("order_id", "the order belongs to another customer")
    }
  }
}
