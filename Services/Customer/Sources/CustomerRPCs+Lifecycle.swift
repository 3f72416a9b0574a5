import Foundation
import GRPCCore
import GRPCProtobuf
import RapportCore
import RapportProtos

/// Merge, erase, export and bulk import.
extension CustomerRPCs {
  func mergeCustomers(
    request: Rapport_Customer_V1_MergeCustomersRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_MergeCustomersResponse {
    let survivor = try Validate.uuid(request.survivorID, field: "survivor_id")
    let duplicate = try Validate.uuid(request.duplicateID, field: "duplicate_id")
    guard survivor != duplicate else {
      throw RPCFailure.invalid("duplicate_id", "must differ from survivor_id: a customer cannot be merged into itself")
    }
    let merged = try await store.merge(survivor: survivor, duplicate: duplicate)
    return .with { $0.survivor = merged }
  }

  func eraseCustomer(
    request: Rapport_Customer_V1_EraseCustomerRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_EraseCustomerResponse {
    let id = try Validate.uuid(request.customerID, field: "customer_id")
    let reason = try Validate.optional(request.reason, field: "reason", max: 200)
    let erased = try await store.erase(id, reason: reason)
    return .with { $0.customer = erased }
  }

  func exportCustomer(
    request: Rapport_Customer_V1_ExportCustomerRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_ExportCustomerResponse {
    try await store.export(try Validate.uuid(request.customerID, field: "customer_id"))
  }

  /// Rows per import transaction.
  static let importBatchSize = 1000
  /// Row errors returned at most.
  static let importErrorLimit = 1000

  func importCustomers(
    request: RPCAsyncSequence<Rapport_Customer_V1_ImportCustomersRequest, any Error>, context: ServerContext
  ) async throws -> Rapport_Customer_V1_ImportCustomersResponse {
    var response = Rapport_Customer_V1_ImportCustomersResponse()
    var batch: [CustomerStore.ImportRow] = []
    func flush() async throws {
      let (created, existing) = try await store.importBatch(batch)
      response.created += Int64(created)
      response.existing += Int64(existing)
      batch.removeAll(keepingCapacity: true)
    }
    for try await row in request {
      response.rows += 1
      let number = row.rowNumber > 0 ? row.rowNumber : response.rows
      do {
        batch.append(try Self.importRow(row, number: number))
      } catch let error as GoogleRPCStatus {
        response.failed += 1
        if response.errors.count < Self.importErrorLimit {
          response.errors.append(.with {
            $0.rowNumber = number
            $0.field = String(error.message.prefix { $0 != ":" })
            $0.message = error.message
          })
        }
      }
      if batch.count >= Self.importBatchSize { try await flush() }
    }
    try await flush()
    return response
  }

  /// One import row validated into the customer it would create and its identities.
  static func importRow(_ row: Rapport_Customer_V1_ImportCustomersRequest, number: Int64) throws -> CustomerStore.ImportRow {
    var identities: [IdentityKey] = []
    if !row.email.isEmpty { identities.append(.email(try Validate.email(row.email))) }
    if !row.phone.isEmpty { identities.append(.phone(try CustomerInput.phone(row.phone))) }
    let channel = try Validate.known(row.channel, field: "channel")
    if !row.externalID.isEmpty {
      guard channel != .unspecified else { throw RPCFailure.invalid("channel", "is required with external_id") }
      identities.append(
        IdentityKey(
          kind: IdentityKey.Kind.external, channel: channel.rawValue,
          value: try Validate.required(row.externalID, field: "external_id", max: 128)))
    }
    guard !identities.isEmpty else { throw RPCFailure.invalid("email", "a row needs an email, phone or external_id") }
    var customer = newCustomer(channel: channel)
    customer.givenName = try CustomerInput.name(row.givenName, field: "given_name")
    customer.familyName = try CustomerInput.name(row.familyName, field: "family_name")
    customer.tags = try CustomerInput.tags(row.tags)
    customer.preferences.language = try CustomerInput.language(row.language, field: "language")
    return .init(number: number, customer: customer, identities: identities)
  }
}
