import Foundation
import RapportCore
import RapportProtos

/// One identity as stored: kind, scope channel (only for external ids, else 0) and normalised value.
struct IdentityKey: Hashable, Sendable, Comparable {
  var kind: Int
  var channel: Int
  var value: String

  var proto: Rapport_Customer_V1_Identity {
    .with {
      $0.kind = Rapport_Customer_V1_IdentityKind(rawValue: kind) ?? .unspecified
      $0.channel = Rapport_Common_V1_Channel(rawValue: channel) ?? .unspecified
      $0.value = value
    }
  }

  static func < (a: IdentityKey, b: IdentityKey) -> Bool {
    (a.kind, a.channel, a.value) < (b.kind, b.channel, b.value)
  }

  /// The stored `kind` numbers (the `IdentityKind` enum values).
  enum Kind {
    static let email = Rapport_Customer_V1_IdentityKind.email.rawValue
    static let phone = Rapport_Customer_V1_IdentityKind.phone.rawValue
    static let external = Rapport_Customer_V1_IdentityKind.externalID.rawValue
  }

  static func email(_ value: String) -> IdentityKey { IdentityKey(kind: Kind.email, channel: 0, value: value) }
  static func phone(_ value: String) -> IdentityKey { IdentityKey(kind: Kind.phone, channel: 0, value: value) }
}

/// Validation and normalisation of customer-service input; each failure names the field.
enum CustomerInput {
  static let nameLimit = 200
  static let maxTags = 50
  static let maxAttributes = 100
  static let maxAddresses = 20
  static let maxIdentities = 10

  /// A phone number in E.164: "+" then 8–15 digits, the first not 0. Spaces, dots, dashes and parentheses
  /// are dropped; a leading "00" means "+".
  static func phone(_ raw: String, field: String = "phone") throws -> String {
    var text = try Validate.required(raw, field: field, max: 32)
    text.removeAll { " .-()/".contains($0) }
    if text.hasPrefix("00") { text = "+" + text.dropFirst(2) }
    guard text.hasPrefix("+") else {
      throw RPCFailure.invalid(field, "must be in international format starting with + and the country code")
    }
    let digits = text.dropFirst()
    guard (8...15).contains(digits.count), digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
      digits.first != "0"
    else { throw RPCFailure.invalid(field, "must be an E.164 number: + and 8 to 15 digits") }
    return text
  }

  /// A validated, normalised identity.
  static func identity(_ identity: Rapport_Customer_V1_Identity, field: String) throws -> IdentityKey {
    switch identity.kind {
    case .email:
      return .email(try Validate.email(identity.value, field: "\(field).value"))
    case .phone:
      return .phone(try phone(identity.value, field: "\(field).value"))
    case .externalID:
      let channel = try Validate.specified(identity.channel, field: "\(field).channel")
      let value = try Validate.required(identity.value, field: "\(field).value", max: 128)
      return IdentityKey(kind: identity.kind.rawValue, channel: channel.rawValue, value: value)
    case .unspecified:
      throw RPCFailure.invalid("\(field).kind", "is required")
    case .UNRECOGNIZED(let raw):
      throw RPCFailure.invalid("\(field).kind", "has an unknown value \(raw)")
    }
  }

  /// 1 to `maxIdentities` identities, deduplicated, in request order.
  static func identities(_ list: [Rapport_Customer_V1_Identity], field: String = "identities") throws -> [IdentityKey] {
    guard !list.isEmpty else { throw RPCFailure.invalid(field, "needs at least one identity") }
    guard list.count <= maxIdentities else { throw RPCFailure.invalid(field, "at most \(maxIdentities) identities") }
    var seen = Set<IdentityKey>()
    return try list.enumerated().compactMap { index, identity in
      let key = try self.identity(identity, field: "\(field)[\(index)]")
      return seen.insert(key).inserted ? key : nil
    }
  }

  static func name(_ value: String, field: String) throws -> String {
    try Validate.optional(value, field: field, max: nameLimit)
  }

  /// Lower-case, deduplicated, sorted tags.
  static func tags(_ tags: [String], field: String = "tags") throws -> [String] {
    try Validate.tags(tags, field: field, max: maxTags)
  }

  /// An optional BCP-47 language tag such as "de" or "pt-BR".
  static func language(_ raw: String, field: String) throws -> String {
    let value = raw.trimmingCharacters(in: .whitespaces)
    if value.isEmpty { return "" }
    let parts = value.split(separator: "-", omittingEmptySubsequences: false)
    guard value.count <= 35, let first = parts.first, (2...3).contains(first.count),
      first.allSatisfy({ $0.isASCII && $0.isLetter }),
      parts.dropFirst().allSatisfy({ (1...8).contains($0.count) && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } })
    else { throw RPCFailure.invalid(field, "must be a BCP-47 language tag such as de or pt-BR") }
    return value
  }

  static func preferences(_ p: Rapport_Customer_V1_Preferences, field: String) throws -> Rapport_Customer_V1_Preferences {
    var result = Rapport_Customer_V1_Preferences()
    result.language = try language(p.language, field: "\(field).language")
    result.currency = p.currency.isEmpty ? "" : try Validate.currency(p.currency, field: "\(field).currency")
    result.contactChannel = try Validate.known(p.contactChannel, field: "\(field).contact_channel")
    return result
  }

  static func addresses(_ list: [Rapport_Customer_V1_Address], field: String) throws -> [Rapport_Customer_V1_Address] {
    guard list.count <= maxAddresses else { throw RPCFailure.invalid(field, "at most \(maxAddresses) addresses") }
    return try list.enumerated().map { index, address in
      let f = "\(field)[\(index)]"
      var result = Rapport_Customer_V1_Address()
      result.kind = try Validate.specified(address.kind, field: "\(f).kind")
      result.label = try Validate.optional(address.label, field: "\(f).label", max: 64)
      result.line1 = try Validate.required(address.line1, field: "\(f).line1", max: 200)
      result.line2 = try Validate.optional(address.line2, field: "\(f).line2", max: 200)
      result.city = try Validate.optional(address.city, field: "\(f).city", max: 100)
      result.region = try Validate.optional(address.region, field: "\(f).region", max: 100)
      result.postalCode = try Validate.optional(address.postalCode, field: "\(f).postal_code", max: 32)
      result.country = try Validate.country(address.country, field: "\(f).country")
      return result
    }
  }

  static func attributes(
    _ map: [String: Rapport_Customer_V1_AttributeValue], field: String
  ) throws -> [String: Rapport_Customer_V1_AttributeValue] {
    guard map.count <= maxAttributes else { throw RPCFailure.invalid(field, "at most \(maxAttributes) attributes") }
    for (key, value) in map {
      guard (1...64).contains(key.count), key.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "_.".contains($0)) })
      else { throw RPCFailure.invalid(field, "keys are 1-64 characters of letters, digits, _ and .") }
      switch value.value {
      case .stringValue(let text)?:
        guard text.count <= 1000 else { throw RPCFailure.invalid("\(field).\(key)", "must be at most 1000 characters") }
      case .moneyValue(let money)?:
        _ = try Validate.currency(money.currency, field: "\(field).\(key).currency")
      case .doubleValue(let number)?:
        guard number.isFinite else { throw RPCFailure.invalid("\(field).\(key)", "must be a finite number") }
      case nil:
        throw RPCFailure.invalid("\(field).\(key)", "needs a value")
      case .intValue?, .boolValue?, .timeValue?:
        break
      }
    }
    return map
  }
}

/// A path UpdateCustomer's mask may name.
enum CustomerPath: String, CaseIterable, Sendable {
  case givenName = "given_name", familyName = "family_name", addresses, tags, attributes, preferences
  case language = "preferences.language", currency = "preferences.currency"
  case contactChannel = "preferences.contact_channel"

  /// Copies the masked fields of `valid` (already checked by `CustomerInput.update`) into `customer`.
  static func apply(_ paths: [CustomerPath], from valid: Rapport_Customer_V1_Customer, to customer: inout Rapport_Customer_V1_Customer) {
    for path in paths {
      switch path {
      case .givenName: customer.givenName = valid.givenName
      case .familyName: customer.familyName = valid.familyName
      case .addresses: customer.addresses = valid.addresses
      case .tags: customer.tags = valid.tags
      case .attributes: customer.attributes = valid.attributes
      case .preferences: customer.preferences = valid.preferences
      case .language: customer.preferences.language = valid.preferences.language
      case .currency: customer.preferences.currency = valid.preferences.currency
      case .contactChannel: customer.preferences.contactChannel = valid.preferences.contactChannel
      }
    }
  }
}

/// A path UpdateCompany's mask may name.
enum CompanyPath: String, CaseIterable, Sendable {
  case legalName = "legal_name", taxID = "tax_id", tier, priceListCode = "price_list_code"
  case paymentTermsNetDays = "payment_terms_net_days", creditLimit = "credit_limit", accountManager = "account_manager"

  /// Copies the masked fields of `valid` (already checked by `CustomerInput.company`) into `company`.
  static func apply(_ paths: [CompanyPath], from valid: Rapport_Customer_V1_Company, to company: inout Rapport_Customer_V1_Company) {
    for path in paths {
      switch path {
      case .legalName: company.legalName = valid.legalName
      case .taxID: company.taxID = valid.taxID
      case .tier: company.tier = valid.tier
      case .priceListCode: company.priceListCode = valid.priceListCode
      case .paymentTermsNetDays: company.paymentTermsNetDays = valid.paymentTermsNetDays
      case .creditLimit: company.creditLimit = valid.creditLimit
      case .accountManager: company.accountManager = valid.accountManager
      }
    }
  }
}

extension CustomerInput {
  /// The masked fields of an UpdateCustomer request, validated and normalised (each failure names its
  /// field); fields outside the mask stay empty.
  static func update(_ new: Rapport_Customer_V1_Customer, paths: [CustomerPath]) throws -> Rapport_Customer_V1_Customer {
    var checked = Rapport_Customer_V1_Customer()
    for path in paths {
      switch path {
      case .givenName: checked.givenName = try name(new.givenName, field: "customer.given_name")
      case .familyName: checked.familyName = try name(new.familyName, field: "customer.family_name")
      case .addresses: checked.addresses = try addresses(new.addresses, field: "customer.addresses")
      case .tags: checked.tags = try tags(new.tags, field: "customer.tags")
      case .attributes: checked.attributes = try attributes(new.attributes, field: "customer.attributes")
      case .preferences, .language, .currency, .contactChannel:
        checked.preferences = try preferences(new.preferences, field: "customer.preferences")
      }
    }
    return checked
  }

  /// The company's fields named in `paths` (all of them when nil: CreateCompany), validated and normalised.
  static func company(
    _ input: Rapport_Customer_V1_Company, paths: [CompanyPath] = CompanyPath.allCases
  ) throws -> Rapport_Customer_V1_Company {
    var company = Rapport_Customer_V1_Company()
    for path in paths {
      let field = "company.\(path.rawValue)"
      switch path {
      case .legalName: company.legalName = try Validate.required(input.legalName, field: field, max: 200)
      case .taxID:
        company.taxID = try Validate.optional(input.taxID, field: field, max: 32).uppercased()
        guard company.taxID.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
          throw RPCFailure.invalid(field, "may contain only letters and digits")
        }
      case .tier: company.tier = try Validate.optional(input.tier, field: field, max: 32).lowercased()
      case .priceListCode: company.priceListCode = try Validate.optional(input.priceListCode, field: field, max: 32)
      case .paymentTermsNetDays:
        guard (0...365).contains(input.paymentTermsNetDays) else { throw RPCFailure.invalid(field, "must be 0 to 365") }
        company.paymentTermsNetDays = input.paymentTermsNetDays
      case .creditLimit:
        if input.hasCreditLimit {
          company.creditLimit.currency = try Validate.currency(input.creditLimit.currency, field: "\(field).currency")
          guard input.creditLimit.amountMinor >= 0 else {
            throw RPCFailure.invalid("\(field).amount_minor", "must be zero or more")
          }
          company.creditLimit.amountMinor = input.creditLimit.amountMinor
        }
      case .accountManager: company.accountManager = try Validate.optional(input.accountManager, field: field, max: 200)
      }
    }
    return company
  }
}
