import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportCore
import RapportProtos

/// The order service's calls to the customer service, each under `timeout`. NOT_FOUND and
/// INVALID_ARGUMENT pass through (naming this request's field); anything else is UNAVAILABLE so the
/// caller stores nothing and may retry.
struct CustomerDirectory: Sendable {
  let client: Rapport_Customer_V1_CustomerService.Client<HTTP2ClientTransport.Posix>
  let timeout: Duration
  let logger: Logger

  /// What the customer service says of a customer id.
  enum Confirmation: Sendable {
    /// The id to store rows under: the customer's own, or its survivor's after a merge.
    case active(UUID)
    case erased
  }

  func confirm(_ id: UUID) async throws -> Confirmation {
    let customer = try await customer(id)
    if customer.state == .erased { return .erased }
    guard let canonical = UUID(uuidString: customer.id) else { throw RPCFailure.internal("customer without id") }
    return .active(canonical)
  }

  /// The customer owning these identities (created when none does).
  func resolve(
    _ identities: [Rapport_Customer_V1_Identity], channel: Rapport_Common_V1_Channel,
    name: Rapport_Order_V1_PostalAddress?
  ) async throws -> UUID {
    let response = try await call("customer", id: "", field: "customer_identities") { options in
      try await client.resolveCustomer(
        .with {
          $0.identities = identities
          $0.channel = channel
          if let name, !name.name.isEmpty {
            let parts = name.name.split(separator: " ", maxSplits: 1).map(String.init)
            $0.hints.givenName = parts[0]
            if parts.count > 1 { $0.hints.familyName = parts[1] }
          }
        }, options: options)
    }
    guard let id = UUID(uuidString: response.customer.id) else { throw RPCFailure.internal("customer without id") }
    if response.customer.state == .erased { throw RPCFailure.failedPrecondition("the customer was erased") }
    return id
  }

  /// A company's payment terms in days.
  func paymentTerms(company: UUID) async throws -> Int {
    let raw = company.uuidString.lowercased()
    let found = try await call("company", id: raw, field: "b2b.company_id") { options in
      try await client.getCompany(.with { $0.companyID = raw }, options: options).company
    }
    return Int(found.paymentTermsNetDays)
  }

  /// FAILED_PRECONDITION unless the customer is a contact of the company (orders on a company's terms
  /// come from its people).
  func confirmContact(_ id: UUID, of company: UUID) async throws {
    let found = try await customer(id)
    guard found.companies.contains(where: { UUID(uuidString: $0.companyID) == company }) else {
      throw RPCFailure.failedPrecondition("b2b.company_id: the customer is not a contact of this company")
    }
  }

  private func customer(_ id: UUID) async throws -> Rapport_Customer_V1_Customer {
    let raw = id.uuidString.lowercased()
    return try await call("customer", id: raw) { options in
      try await client.getCustomer(.with { $0.customerID = raw }, options: options).customer
    }
  }

  private func call<Value: Sendable>(
    _ what: String, id: String, field: String = "customer_id",
    _ body: @Sendable (CallOptions) async throws -> Value
  ) async throws -> Value {
    try await Upstream("customer service", timeout: timeout, logger: logger).call(what, id: id, field: field, body)
  }
}
