import Foundation
import GRPCCore
import Logging
import RapportCore
import RapportProtos
import SwiftProtobuf

/// `rapport.customer.v1.CustomerService`: validate → store → proto. The RPCs are grouped by capability
/// in the `CustomerRPCs+…` files.
struct CustomerRPCs: Rapport_Customer_V1_CustomerService.SimpleServiceProtocol {
  let store: CustomerStore
  let logger: Logger

  func createCustomer(
    request: Rapport_Customer_V1_CreateCustomerRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_CreateCustomerResponse {
    var identities = [IdentityKey.email(try Validate.email(request.email))]
    if !request.phone.isEmpty { identities.append(.phone(try CustomerInput.phone(request.phone))) }
    var customer = Self.newCustomer(channel: try Validate.known(request.channel, field: "channel"))
    customer.givenName = try CustomerInput.name(request.givenName, field: "given_name")
    customer.familyName = try CustomerInput.name(request.familyName, field: "family_name")
    let created = try await store.create(customer, identities: identities)
    return .with { $0.customer = created }
  }

  func getCustomer(
    request: Rapport_Customer_V1_GetCustomerRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_GetCustomerResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    guard let (customer, mergedFrom) = try await store.get(id) else {
      throw RPCFailure.notFound("customer", request.customerID)
    }
    return .with {
      $0.customer = customer
      $0.mergedFrom = mergedFrom ?? ""
    }
  }

  func batchGetCustomers(
    request: Rapport_Customer_V1_BatchGetCustomersRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_BatchGetCustomersResponse {
    let ids = try Validate.uuids(request.customerIds, field: "customer_ids")
    let store = store
    let found = try await readEach(ids) { try await store.get($0) }
    return .with {
      $0.results = found.map { found in
        .with {
          guard let found else { return }
          $0.customer = found.customer
          $0.mergedFrom = found.mergedFrom ?? ""
        }
      }
    }
  }

  func findCustomer(
    request: Rapport_Customer_V1_FindCustomerRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_FindCustomerResponse {
    let key: IdentityKey
    switch (request.email.isEmpty, request.hasIdentity) {
    case (true, true): key = try CustomerInput.identity(request.identity, field: "identity")
    case (false, true): throw RPCFailure.invalid("identity", "give either email or identity, not both")
    case (_, false): key = .email(try Validate.email(request.email))
    }
    guard let customer = try await store.find(key) else {
      throw RPCError(code: .notFound, message: request.hasIdentity ? "no customer has this identity" : "no customer has this email")
    }
    return .with { $0.customer = customer }
  }

  func resolveCustomer(
    request: Rapport_Customer_V1_ResolveCustomerRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_ResolveCustomerResponse {
    let identities = try CustomerInput.identities(request.identities)
    var template = Self.newCustomer(channel: try Validate.known(request.channel, field: "channel"))
    template.givenName = try CustomerInput.name(request.hints.givenName, field: "hints.given_name")
    template.familyName = try CustomerInput.name(request.hints.familyName, field: "hints.family_name")
    template.preferences = try CustomerInput.preferences(request.hints.preferences, field: "hints.preferences")
    template.tags = try CustomerInput.tags(request.hints.tags, field: "hints.tags")
    let resolution = try await store.resolve(identities, template: template)
    return .with {
      $0.customer = resolution.customer
      $0.created = resolution.created
      $0.conflicts = resolution.conflicts.map { key, owner in
        .with {
          $0.identity = key.proto
          $0.customerID = owner.lowercased
        }
      }
    }
  }

  func updateCustomer(
    request: Rapport_Customer_V1_UpdateCustomerRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_UpdateCustomerResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let version = try Validate.version(request.expectedVersion)
    let paths = try Validate.mask(request.updateMask, as: CustomerPath.self)
    // Every masked value is validated before the store is touched.
    let valid = try CustomerInput.update(request.customer, paths: paths)
    let customer = try await store.update(id, expectedVersion: version, paths: paths.map(\.rawValue)) {
      CustomerPath.apply(paths, from: valid, to: &$0)
    }
    return .with { $0.customer = customer }
  }

  func addIdentity(
    request: Rapport_Customer_V1_AddIdentityRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_AddIdentityResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let identity = try CustomerInput.identity(request.identity, field: "identity")
    let customer = try await store.addIdentity(identity, to: id)
    return .with { $0.customer = customer }
  }

  func removeIdentity(
    request: Rapport_Customer_V1_RemoveIdentityRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_RemoveIdentityResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let identity = try CustomerInput.identity(request.identity, field: "identity")
    let customer = try await store.removeIdentity(identity, from: id)
    return .with { $0.customer = customer }
  }

  func searchCustomers(
    request: Rapport_Customer_V1_SearchCustomersRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_SearchCustomersResponse {
    var filter = CustomerStore.SearchFilter()
    let query = request.query.trimmingCharacters(in: .whitespaces)
    if !query.isEmpty {
      guard (3...100).contains(query.count) else { throw RPCFailure.invalid("query", "must be 3 to 100 characters") }
      filter.fragment = query
    }
    if !request.tag.isEmpty { filter.tag = try Validate.tag(request.tag, field: "tag") }
    if !request.companyID.isEmpty { filter.companyID = try Validate.uuid(request.companyID, field: "company_id") }
    filter.channel = try Validate.known(request.channel, field: "channel").rawValue
    filter.createdAfter = try Validate.time(request.createdAfter, isSet: request.hasCreatedAfter, field: "created_after")
    filter.createdBefore = try Validate.time(request.createdBefore, isSet: request.hasCreatedBefore, field: "created_before")
    let limit = try Validate.pageSize(request.pageSize)
    let token = try PageToken.decode(request.pageToken)
    let rows = try await store.search(filter, after: token, limit: limit + 1)
    let page = PageToken.page(rows, limit: limit) { PageToken($0.createTime, $0.id) }
    return .with {
      $0.customers = page.rows
      $0.nextPageToken = page.nextPageToken
    }
  }

  /// A new active customer with a fresh id, created now.
  static func newCustomer(channel: Rapport_Common_V1_Channel) -> Rapport_Customer_V1_Customer {
    let now = Google_Protobuf_Timestamp(microsecondsOf: Date.databaseNow)
    return .with {
      $0.id = UUID().lowercased
      $0.channel = channel
      $0.state = .active
      $0.createTime = now
      $0.updateTime = now
    }
  }
}
