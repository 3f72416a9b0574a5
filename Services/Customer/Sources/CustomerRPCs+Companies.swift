import Foundation
import GRPCCore
import RapportCore
import RapportProtos

/// B2B companies and contacts.
extension CustomerRPCs {
  static let companyPaths: Set<String> = [
    "legal_name", "tax_id", "tier", "price_list_code", "payment_terms_net_days", "credit_limit", "account_manager",
  ]

  /// The company's fields named in `paths` (all when nil), validated and normalised.
  static func company(
    _ input: Rapport_Customer_V1_Company, paths: [String]? = nil
  ) throws -> Rapport_Customer_V1_Company {
    var company = Rapport_Customer_V1_Company()
    for path in paths ?? companyPaths.sorted() {
      let field = "company.\(path)"
      switch path {
      case "legal_name": company.legalName = try Validate.required(input.legalName, field: field, max: 200)
      case "tax_id":
        company.taxID = try Validate.optional(input.taxID, field: field, max: 32).uppercased()
        guard company.taxID.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
          throw RPCFailure.invalid(field, "may contain only letters and digits")
        }
      case "tier": company.tier = try Validate.optional(input.tier, field: field, max: 32).lowercased()
      case "price_list_code": company.priceListCode = try Validate.optional(input.priceListCode, field: field, max: 32)
      case "payment_terms_net_days":
        guard (0...365).contains(input.paymentTermsNetDays) else { throw RPCFailure.invalid(field, "must be 0 to 365") }
        company.paymentTermsNetDays = input.paymentTermsNetDays
      case "credit_limit":
        if input.hasCreditLimit {
          company.creditLimit.currency = try Validate.currency(input.creditLimit.currency, field: "\(field).currency")
          guard input.creditLimit.amountMinor >= 0 else {
            throw RPCFailure.invalid("\(field).amount_minor", "must be zero or more")
          }
          company.creditLimit.amountMinor = input.creditLimit.amountMinor
        }
      default: company.accountManager = try Validate.optional(input.accountManager, field: field, max: 200)
      }
    }
    return company
  }

  func createCompany(
    request: Rapport_Customer_V1_CreateCompanyRequest, context: ServerContext
  ) async throws -> Rapport_Customer_V1_CreateCompanyResponse {
    var company = try Self.company(request.company)
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
    let paths = try Validate.mask(request.updateMask, allowed: Self.companyPaths)
    let valid = try Self.company(request.company, paths: paths)
    let company = try await store.updateCompany(id, expectedVersion: version, paths: paths) { company in
      for path in paths {
        switch path {
        case "legal_name": company.legalName = valid.legalName
        case "tax_id": company.taxID = valid.taxID
        case "tier": company.tier = valid.tier
        case "price_list_code": company.priceListCode = valid.priceListCode
        case "payment_terms_net_days": company.paymentTermsNetDays = valid.paymentTermsNetDays
        case "credit_limit": company.creditLimit = valid.creditLimit
        default: company.accountManager = valid.accountManager
        }
      }
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
