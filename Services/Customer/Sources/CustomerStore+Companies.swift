import Foundation
import GRPCCore
import PostgresNIO
import RapportCore
import RapportProtos

/// B2B companies and their contacts.
extension CustomerStore {
  typealias Company = Rapport_Customer_V1_Company

  /// Selects the columns `Company.init(row:)` reads, in its order.
  private static let companySelect = """
    SELECT id, legal_name, tax_id, tier, price_list_code, payment_terms_net_days, credit_limit_minor,
      credit_currency, account_manager, version, created_at, updated_at FROM customer.companies
    """

  /// Inserts a company and emits `CompanyCreated`; ALREADY_EXISTS when the tax id is taken.
  func createCompany(_ company: Company) async throws -> Company {
    guard let id = UUID(uuidString: company.id) else { throw RPCFailure.internal("company without id") }
    do {
      return try await client.transaction(logger: logger) { connection in
        let now = company.createTime.date
        try await connection.query(
          """
          INSERT INTO customer.companies (id, legal_name, tax_id, tier, price_list_code, payment_terms_net_days,
            credit_limit_minor, credit_currency, account_manager, created_at, updated_at)
          VALUES (\(id), \(company.legalName), \(company.taxID), \(company.tier), \(company.priceListCode),
            \(Int(company.paymentTermsNetDays)), \(company.creditLimit.amountMinor), \(company.creditLimit.currency),
            \(company.accountManager), \(now), \(now))
          """, logger: logger)
        try await emit(
          .companyCreated(.with {
            $0.companyID = company.id
            $0.legalName = company.legalName
            $0.tier = company.tier
          }), about: company.id, aggregate: "company", at: now, on: connection)
        return try await companies("\(unescaped: Self.companySelect) WHERE id = \(id)", on: connection)[0]
      }
    } catch let error as PSQLError where error.isUniqueViolation {
      throw RPCFailure.alreadyExists("tax_id: a company with this tax id already exists")
    }
  }

  func company(_ id: UUID, on connection: PostgresConnection? = nil, forUpdate: Bool = false) async throws -> Company? {
    let query: PostgresQuery = forUpdate
      ? "\(unescaped: Self.companySelect) WHERE id = \(id) FOR UPDATE"
      : "\(unescaped: Self.companySelect) WHERE id = \(id)"
    return try await companies(query, on: connection).first
  }

  /// Applies `change` when the version matches (ABORTED otherwise) and emits `CompanyUpdated`.
  func updateCompany(
    _ id: UUID, expectedVersion: Int64, paths: [String], change: @Sendable (inout Company) -> Void
  ) async throws -> Company {
    do {
      return try await client.transaction(logger: logger) { connection in
        guard var company = try await company(id, on: connection, forUpdate: true) else {
          throw RPCFailure.notFound("company", id.lowercased)
        }
        guard company.version == expectedVersion else {
          throw RPCError(
            code: .aborted,
            message: "expected_version \(expectedVersion) is stale: the company is at version \(company.version)")
        }
        change(&company)
        let now = Date.databaseNow
        try await connection.query(
          """
          UPDATE customer.companies SET legal_name = \(company.legalName), tax_id = \(company.taxID),
            tier = \(company.tier), price_list_code = \(company.priceListCode),
            payment_terms_net_days = \(Int(company.paymentTermsNetDays)),
            credit_limit_minor = \(company.creditLimit.amountMinor), credit_currency = \(company.creditLimit.currency),
            account_manager = \(company.accountManager), version = version + 1, updated_at = \(now)
          WHERE id = \(id)
          """, logger: logger)
        try await emit(
          .companyUpdated(.with {
            $0.companyID = company.id
            $0.changedFields = paths
            $0.version = company.version + 1
          }), about: company.id, aggregate: "company", at: now, on: connection)
        return try await self.company(id, on: connection) ?? company
      }
    } catch let error as PSQLError where error.isUniqueViolation {
      throw RPCFailure.alreadyExists("tax_id: a company with this tax id already exists")
    }
  }

  /// Companies, oldest first, after the keyset token.
  func listCompanies(after token: PageToken?, limit: Int) async throws -> [Company] {
    try await companies(
      """
      \(unescaped: Self.companySelect)
      WHERE \(after: token, time: "created_at", id: "id", descending: false)
      ORDER BY created_at, id LIMIT \(limit)
      """)
  }

  private func companies(_ query: PostgresQuery, on connection: PostgresConnection? = nil) async throws -> [Company] {
    let rows = try await rows(query, on: connection)
    var result: [Company] = []
    for try await row in rows {
      result.append(try Company(row: row))
    }
    return result
  }

  /// Links a live customer to a company (a new role replaces the old) and emits `CompanyContactLinked`.
  func link(customer customerID: UUID, to companyID: UUID, role: String) async throws -> Rapport_Customer_V1_CompanyLink {
    try await client.transaction(logger: logger) { connection in
      guard try await company(companyID, on: connection) != nil else {
        throw RPCFailure.notFound("company", companyID.lowercased)
      }
      _ = try await lockActive(customerID, on: connection)
      let now = Date.databaseNow
      let rows = try await connection.query(
        """
        INSERT INTO customer.company_contacts (company_id, customer_id, role, linked_at)
        VALUES (\(companyID), \(customerID), \(role), \(now))
        ON CONFLICT (company_id, customer_id) DO UPDATE SET role = EXCLUDED.role
        RETURNING linked_at
        """, logger: logger)
      var linked = now
      for try await time in rows.decode(Date.self) { linked = time }
      try await touch(customerID, at: now, on: connection)
      try await emit(
        .companyContactLinked(.with {
          $0.companyID = companyID.lowercased
          $0.customerID = customerID.lowercased
          $0.role = role
        }), about: companyID.lowercased, aggregate: "company", at: now, on: connection)
      return .with {
        $0.companyID = companyID.lowercased
        $0.customerID = customerID.lowercased
        $0.role = role
        $0.linkTime = .init(microsecondsOf: linked)
      }
    }
  }

  /// Removes a link; NOT_FOUND when there is none.
  func unlink(customer customerID: UUID, from companyID: UUID) async throws {
    try await client.transaction(logger: logger) { connection in
      let rows = try await connection.query(
        """
        DELETE FROM customer.company_contacts WHERE company_id = \(companyID) AND customer_id = \(customerID)
        RETURNING customer_id
        """, logger: logger)
      var removed = false
      for try await _ in rows { removed = true }
      guard removed else { throw RPCError(code: .notFound, message: "the customer is not a contact of this company") }
      let now = Date.databaseNow
      try await touch(customerID, at: now, on: connection)
      try await emit(
        .companyContactUnlinked(.with {
          $0.companyID = companyID.lowercased
          $0.customerID = customerID.lowercased
        }), about: companyID.lowercased, aggregate: "company", at: now, on: connection)
    }
  }

  /// A company's contacts with their links, oldest link first, after the keyset token.
  func contacts(of companyID: UUID, after token: PageToken?, limit: Int) async throws -> [Rapport_Customer_V1_CompanyContact] {
    let rows = try await client.query(
      """
      \(unescaped: CustomerRows.select) JOIN customer.company_contacts k ON k.customer_id = c.id
      WHERE k.company_id = \(companyID)
        AND \(after: token, time: "k.linked_at", id: "k.customer_id", descending: false)
      ORDER BY k.linked_at, k.customer_id LIMIT \(limit)
      """, logger: logger)
    var result: [Rapport_Customer_V1_CompanyContact] = []
    for try await row in rows {
      let customer = try Customer(row: row)
      guard let link = customer.companies.first(where: { $0.companyID == companyID.lowercased }) else { continue }
      result.append(.with {
        $0.customer = customer
        $0.link = link
      })
    }
    return result
  }
}

extension Rapport_Customer_V1_Company {
  /// Decodes a row selected with `CustomerStore.companySelect`, by position.
  init(row: PostgresRow) throws {
    var r = RowReader(row)
    self.init()
    id = try r.next(UUID.self).lowercased
    legalName = try r.next()
    taxID = try r.next()
    tier = try r.next()
    priceListCode = try r.next()
    paymentTermsNetDays = Int32(try r.next(Int.self))
    let limit = try r.next(Int64.self)
    let currency = try r.next(String.self)
    if !currency.isEmpty {
      creditLimit.currency = currency
      creditLimit.amountMinor = limit
    }
    accountManager = try r.next()
    version = try r.next()
    createTime = .init(microsecondsOf: try r.next(Date.self))
    updateTime = .init(microsecondsOf: try r.next(Date.self))
  }
}
