import Foundation
import GRPCCore
import Logging
import RapportCore
import RapportProtos

/// `rapport.customer.v1.CustomerService`: validate → store → proto.
struct CustomerRPCs: Rapport_Customer_V1_CustomerService.SimpleServiceProtocol {
  let store: CustomerStore
  let logger: Logger

  func createCustomer(
    request: Rapport_Customer_V1_CreateCustomerRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_CreateCustomerResponse {
    try await serving(logger) {
      let email = try Validate.email(request.email)
      let given = try Validate.optional(request.givenName, field: "given_name", max: 200)
      let family = try Validate.optional(request.familyName, field: "family_name", max: 200)
      let phone = try Validate.optional(request.phone, field: "phone", max: 32)
      guard phone.allSatisfy({ $0.isNumber || " +-()".contains($0) }) else {
        throw RPCFailure.invalid("phone", "may contain only digits, spaces and + - ( )")
      }
      let channel = try Validate.known(request.channel, field: "channel")
      let now = Date.databaseNow
      let record = CustomerRecord(
        id: UUID(), email: email, givenName: given, familyName: family, phone: phone,
        channel: channel.rawValue, createdAt: now, updatedAt: now)
      do {
        let created = try await store.create(record)
        return .with { $0.customer = created.proto }
      } catch CustomerStore.Failure.emailTaken {
        throw RPCFailure.alreadyExists("email: a customer with this email already exists")
      }
    }
  }

  func getCustomer(
    request: Rapport_Customer_V1_GetCustomerRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_GetCustomerResponse {
    try await serving(logger) {
      let id = try Validate.uuid(request.customerID, field: "customer_id")
      guard let record = try await store.get(id: id) else { throw RPCFailure.notFound("customer", request.customerID) }
      return .with { $0.customer = record.proto }
    }
  }

  func findCustomer(
    request: Rapport_Customer_V1_FindCustomerRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_FindCustomerResponse {
    try await serving(logger) {
      let email = try Validate.email(request.email)
      guard let record = try await store.find(email: email) else {
        throw RPCError(code: .notFound, message: "no customer has this email")
      }
      return .with { $0.customer = record.proto }
    }
  }
}
