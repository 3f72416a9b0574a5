import Foundation
import PostgresNIO
import RapportCore
import RapportProtos
import SwiftProtobuf

/// How a customer row (with its identities and company links) is selected and turned into the proto.
enum CustomerRows {
  /// Selects every column `Customer.init(row:)` reads, in its order, from `customer.customers c`. Identities and
  /// company links come as parallel arrays (one aggregate per table, decoded by position: no JSON built
  /// in SQL and parsed again here).
  static let select =
    """
    SELECT c.id, c.given_name, c.family_name, c.channel, c.state, c.merged_into, c.version, c.language,
      c.currency, c.contact_channel, c.tags, c.extras::text, c.created_at, c.updated_at,
      ci.kinds, ci.channels, ci.vals, cl.ids, cl.roles, cl.times
    FROM customer.customers c
    CROSS JOIN LATERAL (
      SELECT array_agg(i.kind ORDER BY i.added_at, i.kind, i.value) AS kinds,
        array_agg(i.channel ORDER BY i.added_at, i.kind, i.value) AS channels,
        array_agg(i.value ORDER BY i.added_at, i.kind, i.value) AS vals
      FROM customer.identities i WHERE i.customer_id = c.id) ci
    CROSS JOIN LATERAL (
      SELECT array_agg(l.company_id ORDER BY l.linked_at, l.company_id) AS ids,
        array_agg(l.role ORDER BY l.linked_at, l.company_id) AS roles,
        array_agg(l.linked_at ORDER BY l.linked_at, l.company_id) AS times
      FROM customer.company_contacts l WHERE l.customer_id = c.id) cl
    """

  /// The customers with these ids as stored, prepared once per connection: the hot read, batched by
  /// `CustomerStore.byID` (one id when the service is idle, every waiting id when it is busy).
  struct ByIDs: PostgresPreparedStatement {
    static let sql = CustomerRows.select + " WHERE c.id = ANY($1::uuid[])"
    typealias Row = Rapport_Customer_V1_Customer
    let ids: [UUID]

    func makeBindings() throws -> PostgresBindings {
      var bindings = PostgresBindings(capacity: 1)
      bindings.append(ids)
      return bindings
    }

    func decodeRow(_ row: PostgresRow) throws -> Row { try Row(row: row) }
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

extension Rapport_Customer_V1_Customer {
  /// The profile fields a new customer carries beyond identities and names, as `CustomerCreated` names
  /// them (so a consumer that keeps tags or attributes knows whether to read the customer).
  var profileFields: [String] {
    var fields: [String] = []
    if preferences != Rapport_Customer_V1_Preferences() { fields.append("preferences") }
    if !tags.isEmpty { fields.append("tags") }
    if !attributes.isEmpty { fields.append("attributes") }
    if !addresses.isEmpty { fields.append("addresses") }
    return fields
  }

  /// Decodes a row selected with `CustomerRows.select`, by position.
  init(row: PostgresRow) throws {
    var r = RowReader(row)
    var c = Rapport_Customer_V1_Customer()
    c.id = try r.next(UUID.self).lowercased
    c.givenName = try r.next()
    c.familyName = try r.next()
    c.channel = .init(rawValue: try r.next(Int.self)) ?? .unspecified
    c.state = .init(rawValue: try r.next(Int.self)) ?? .unspecified
    c.mergedInto = try r.next(UUID?.self)?.lowercased ?? ""
    c.version = try r.next()
    c.preferences.language = try r.next()
    c.preferences.currency = try r.next()
    c.preferences.contactChannel = .init(rawValue: try r.next(Int.self)) ?? .unspecified
    c.tags = try r.next()
    let extrasJSON = try r.next(String.self)
    if extrasJSON != "{}" {
      let extras = try Rapport_Customer_V1_Customer(jsonString: extrasJSON)
      c.addresses = extras.addresses
      c.attributes = extras.attributes
    }
    c.createTime = .init(microsecondsOf: try r.next(Date.self))
    c.updateTime = .init(microsecondsOf: try r.next(Date.self))
    let kinds = try r.next([Int]?.self) ?? []
    let channels = try r.next([Int]?.self) ?? []
    let values = try r.next([String]?.self) ?? []
    c.identities.reserveCapacity(kinds.count)
    for index in kinds.indices {
      let key = IdentityKey(kind: kinds[index], channel: channels[index], value: values[index])
      c.identities.append(key.proto)
      if key.kind == IdentityKey.Kind.email, c.email.isEmpty { c.email = key.value }
      if key.kind == IdentityKey.Kind.phone, c.phone.isEmpty { c.phone = key.value }
    }
    let companies = try r.next([UUID]?.self) ?? []
    let roles = try r.next([String]?.self) ?? []
    let times = try r.next([Date]?.self) ?? []
    c.companies = companies.indices.map { index in
      .with {
        $0.companyID = companies[index].lowercased
        $0.customerID = c.id
        $0.role = roles[index]
        $0.linkTime = .init(microsecondsOf: times[index])
      }
    }
    c.kind = c.state == .active ? (companies.isEmpty ? .person : .companyContact) : .unspecified
    self = c
  }
}

extension UUID {
  /// The lower-case text form every Rapport API uses.
  var lowercased: String { uuidString.lowercased() }
}
