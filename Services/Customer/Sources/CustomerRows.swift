import Foundation
import PostgresNIO
import RapportCore
import RapportProtos
import SwiftProtobuf

/// How a customer row (with its identities and company links) is selected and turned into the proto.
enum CustomerRows {
  /// Selects every column `decode` reads, from `customer.customers c`.
  static let select =
    """
    SELECT c.id, c.given_name, c.family_name, c.channel, c.state, c.merged_into, c.version, c.language,
      c.currency, c.contact_channel, c.tags, c.extras::text AS extras, c.created_at, c.updated_at,
      (SELECT coalesce(json_agg(json_build_object('k', i.kind, 'c', i.channel, 'v', i.value)
                                ORDER BY i.added_at, i.kind, i.value), '[]')
       FROM customer.identities i WHERE i.customer_id = c.id)::text AS identities,
      (SELECT coalesce(json_agg(json_build_object('id', l.company_id, 'r', l.role,
                                                  't', (extract(epoch FROM l.linked_at) * 1000000)::bigint)
                                ORDER BY l.linked_at, l.company_id), '[]')
       FROM customer.company_contacts l WHERE l.customer_id = c.id)::text AS companies
    FROM customer.customers c
    """

  private struct IdentityJSON: Decodable { var k: Int, c: Int, v: String }
  private struct LinkJSON: Decodable { var id: String, r: String, t: Int64 }

  static func decode(_ row: PostgresRow) throws -> Rapport_Customer_V1_Customer {
    let r = row.makeRandomAccess()
    var c = Rapport_Customer_V1_Customer()
    let id = try r["id"].decode(UUID.self)
    c.id = id.lowercased
    c.givenName = try r["given_name"].decode(String.self)
    c.familyName = try r["family_name"].decode(String.self)
    c.channel = .init(rawValue: try r["channel"].decode(Int.self)) ?? .unspecified
    c.state = .init(rawValue: try r["state"].decode(Int.self)) ?? .unspecified
    c.mergedInto = try r["merged_into"].decode(UUID?.self)?.lowercased ?? ""
    c.version = try r["version"].decode(Int64.self)
    c.preferences.language = try r["language"].decode(String.self)
    c.preferences.currency = try r["currency"].decode(String.self)
    c.preferences.contactChannel = .init(rawValue: try r["contact_channel"].decode(Int.self)) ?? .unspecified
    c.tags = try r["tags"].decode([String].self)
    let extras = try Rapport_Customer_V1_Customer(jsonString: try r["extras"].decode(String.self))
    c.addresses = extras.addresses
    c.attributes = extras.attributes
    c.createTime = .init(microsecondsOf: try r["created_at"].decode(Date.self))
    c.updateTime = .init(microsecondsOf: try r["updated_at"].decode(Date.self))
    let decoder = JSONDecoder()
    let identities = try decoder.decode([IdentityJSON].self, from: Data(try r["identities"].decode(String.self).utf8))
    c.identities = identities.map { IdentityKey(kind: $0.k, channel: $0.c, value: $0.v).proto }
    c.email = identities.first { $0.k == IdentityKey.Kind.email }?.v ?? ""
    c.phone = identities.first { $0.k == IdentityKey.Kind.phone }?.v ?? ""
    let links = try decoder.decode([LinkJSON].self, from: Data(try r["companies"].decode(String.self).utf8))
    c.companies = links.map { link in
      .with {
        $0.companyID = link.id
        $0.customerID = c.id
        $0.role = link.r
        $0.linkTime = .init(microsecondsOf: Date(timeIntervalSince1970: Double(link.t) / 1_000_000))
      }
    }
    c.kind = c.state == .active ? (links.isEmpty ? .person : .companyContact) : .unspecified
    return c
  }

  /// The JSON stored in `extras`: the fields no query filters on (addresses, custom attributes).
  static func extras(of customer: Rapport_Customer_V1_Customer) throws -> String {
    var extras = Rapport_Customer_V1_Customer()
    extras.addresses = customer.addresses
    extras.attributes = customer.attributes
    var options = JSONEncodingOptions()
    options.preserveProtoFieldNames = true
    return try extras.jsonString(options: options)
  }
}

extension UUID {
  /// The lower-case text form every Rapport API uses.
  var lowercased: String { uuidString.lowercased() }
}
