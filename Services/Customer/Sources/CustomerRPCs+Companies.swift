import Foundation
import GRPCCore
import RapportCore
import RapportProtos

/// B2B companies and contacts.
extension CustomerRPCs {
  func createCompany(
    request: Rapport_Customer_V1_CreateCompanyRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_CreateCompanyResponse {
    var company = try CustomerInput.company(request.company)
    company.id = UUID().lowercased
    company.createTime = .init(microsecondsOf: Date.databaseNow)
    let created = try await store.createCompany(company)
    return .with { $0.company = created }
  }

  func getCompany(
    request: Rapport_Customer_V1_GetCompanyRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_GetCompanyResponse {
    let id = try Validate.uuid(request.companyID, field: "company_id")
    guard let company = try await store.company(id) else { throw RPCFailure.notFound("company", request.companyID) }
    return .with { $0.company = company }
  }

  func updateCompany(
    request: Rapport_Customer_V1_UpdateCompanyRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_UpdateCompanyResponse {
    let id = try Validate.uuid(request.companyID, field: "company_id")
    let version = try Validate.version(request.expectedVersion)
    let paths = try Validate.mask(request.updateMask, as: CompanyPath.self)
    let valid = try CustomerInput.company(request.company, paths: paths)
    let company = try await store.updateCompany(id, expectedVersion: version, paths: paths.map(\.rawValue)) {
      CompanyPath.apply(paths, from: valid, to: &$0)
    }
    return .with { $0.company = company }
  }

  func listCompanies(
    request: Rapport_Customer_V1_ListCompaniesRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_ListCompaniesResponse {
    let limit = try Validate.pageSize(request.pageSize)
    let rows = try await store.listCompanies(after: try PageToken.decode(request.pageToken), limit: limit + 1)
    let page = PageToken.page(rows, limit: limit) { PageToken($0.createTime, $0.id) }
    return .with {
      $0.companies = page.rows
      $0.nextPageToken = page.nextPageToken
    }
  }

  func linkContact(
    request: Rapport_Customer_V1_LinkContactRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_LinkContactResponse {
    let company = try Validate.uuid(request.companyID, field: "company_id")
    let customer = try Validate.uuid(request.customerID, field: "customer_id")
    let role = try Validate.optional(request.role, field: "role", max: 64)
    let link = try await store.link(customer: customer, to: company, role: role)
    return .with { $0.link = link }
  }

  func unlinkContact(
    request: Rapport_Customer_V1_UnlinkContactRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_UnlinkContactResponse {
    let company = try Validate.uuid(request.companyID, field: "company_id")
    let customer = try Validate.uuid(request.customerID, field: "customer_id")
    try await store.unlink(customer: customer, from: company)
    return .init()
  }

  func listCompanyContacts(
    request: Rapport_Customer_V1_ListCompanyContactsRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_ListCompanyContactsResponse {
    let company = try Validate.uuid(request.companyID, field: "company_id")
    let limit = try Validate.pageSize(request.pageSize)
    let token = try PageToken.decode(request.pageToken)
    guard try await store.company(company) != nil else { throw RPCFailure.notFound("company", request.companyID) }
    let rows = try await store.contacts(of: company, after: token, limit: limit + 1)
    let page = PageToken.page(rows, limit: limit) { PageToken($0.link.linkTime, $0.customer.id) }
    return .with {
      $0.contacts = page.rows
      $0.nextPageToken = page.nextPageToken
    }
  }
}
