import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import PostgresNIO
import RapportCore
import RapportProtos

/// Tags and custom attributes, for rule segments (docs/ANALYTICS.md, "Rule segments"). The customer feed
/// names the fields that changed, never their values (it is an append-only history that erasure cannot
/// rewrite), so analytics reads the customer from the customer service when `CustomerCreated`,
/// `CustomerUpdated` or `CustomerMerged` says its tags or attributes may have changed, before the batch
/// is applied, and stores what it read in the batch's transaction.
struct CustomerProfiles: Sendable {
  /// The customer as the customer service has it now (the survivor for a merged id); nil when unknown.
  let read: @Sendable (UUID) async throws -> Rapport_Customer_V1_Customer?

  /// Reads through `client` (a connection to the customer service).
  static func reading(from client: GRPCClient<HTTP2ClientTransport.Posix>) -> CustomerProfiles {
    let customers = Rapport_Customer_V1_CustomerService.Client(wrapping: client)
    return CustomerProfiles { id in
      do {
        return try await customers.getCustomer(.with { $0.customerID = id.uuidString.lowercased() }).customer
      } catch let error as RPCError where error.code == .notFound {
        return nil
      }
    }
  }

  /// Customers of `batch` whose tags or attributes may differ from what analytics holds.
  static func changed(in batch: [Rapport_Events_V1_Event]) -> [UUID] {
    func profile(_ field: String) -> Bool { field == "tags" || field == "attributes" || field.hasPrefix("attributes.") }
    var ids: Set<UUID> = []
    for event in batch {
      switch event.payload {
      case .customerCreated(let created)? where created.profileFields.contains(where: profile):
        UUID(uuidString: created.customerID).map { _ = ids.insert($0) }
      case .customerUpdated(let updated)? where updated.changedFields.contains(where: profile):
        UUID(uuidString: updated.customerID).map { _ = ids.insert($0) }
      case .customerMerged(let merged)?:
        UUID(uuidString: merged.survivorID).map { _ = ids.insert($0) }
      default: continue
      }
    }
    return ids.sorted { $0.uuidString < $1.uuidString }
  }

  /// The current customer of each id `batch` changed (nil: unknown), read `concurrency` at a time.
  func profiles(for batch: [Rapport_Events_V1_Event], concurrency: Int = 8) async throws -> [UUID: Rapport_Customer_V1_Customer?] {
    let ids = Self.changed(in: batch)
    var profiles: [UUID: Rapport_Customer_V1_Customer?] = [:]
    for start in stride(from: 0, to: ids.count, by: concurrency) {
      try await withThrowingTaskGroup(of: (UUID, Rapport_Customer_V1_Customer?).self) { group in
        for id in ids[start..<min(start + concurrency, ids.count)] {
          group.addTask { (id, try await read(id)) }
        }
        for try await (id, customer) in group { profiles[id] = customer }
      }
    }
    return profiles
  }
}

extension AnalyticsStore {
  /// Stores what the customer service returned for each id: tags and attributes of a live customer
  /// (unless a newer version is stored), nothing for one unknown or erased. A merged id's read returns
  /// the survivor, stored under the survivor's id.
  func store(profiles: [UUID: Rapport_Customer_V1_Customer?], on connection: PostgresConnection) async throws {
    for (id, customer) in profiles.sorted(by: { $0.key.uuidString < $1.key.uuidString }) {
      guard let customer, customer.state == .active, let owner = UUID(uuidString: customer.id) else {
        try await connection.query("DELETE FROM analytics.customer_profiles WHERE customer_id = \(id)", logger: logger)
        continue
      }
      let rows = try await connection.query(
        """
        INSERT INTO analytics.customer_profiles (customer_id, version, tags)
        SELECT \(owner), \(customer.version), \(customer.tags)
        WHERE NOT EXISTS (SELECT 1 FROM analytics.erased_customers WHERE customer_id = \(owner))
        ON CONFLICT (customer_id) DO UPDATE SET version = EXCLUDED.version, tags = EXCLUDED.tags
        WHERE customer_profiles.version <= EXCLUDED.version
        RETURNING customer_id
        """, logger: logger)
      var written = false
      for try await _ in rows.decode(UUID.self) { written = true }
      guard written else { continue }
      let attributes = customer.attributes.sorted { $0.key < $1.key }.compactMap { key, value in
        Self.attributeLiteral(value).map { (key, $0) }
      }
      try await connection.query("DELETE FROM analytics.customer_attributes WHERE customer_id = \(owner)", logger: logger)
      for (key, value) in attributes {
        try await connection.query(
          """
          INSERT INTO analytics.customer_attributes (customer_id, key, text_value, number_value, bool_value)
          VALUES (\(owner), \(key), \(value.text), \(value.number), \(value.boolean))
          """, logger: logger)
      }
    }
  }

  /// An attribute as rules compare it: strings as text, numbers and money (minor units) as numbers,
  /// booleans; times are not comparable (nil).
  static func attributeLiteral(_ value: Rapport_Customer_V1_AttributeValue) -> SegmentRule.Literal? {
    switch value.value {
    case .stringValue(let text)?: .text(text)
    case .intValue(let number)?: .number(Double(number))
    case .doubleValue(let number)?: .number(number)
    case .moneyValue(let money)?: .number(Double(money.amountMinor))
    case .boolValue(let flag)?: .boolean(flag)
    case .timeValue?, nil: nil
    }
  }

  /// The tags and the attributes named in `keys` of each of `customers` that has a stored profile.
  func profiles(of customers: [UUID], keys: [String]) async throws
    -> (tags: [UUID: Set<String>], attributes: [UUID: [String: SegmentRule.Literal]])
  {
    var tags: [UUID: Set<String>] = [:]
    let rows = try await client.query(
      "SELECT customer_id, tags FROM analytics.customer_profiles WHERE customer_id = ANY(\(customers)::uuid[])",
      logger: logger)
    for try await (customer, names) in rows.decode((UUID, [String]).self) { tags[customer] = Set(names) }
    var attributes: [UUID: [String: SegmentRule.Literal]] = [:]
    guard !keys.isEmpty else { return (tags, attributes) }
    let values = try await client.query(
      """
      SELECT customer_id, key, text_value, number_value, bool_value FROM analytics.customer_attributes
      WHERE customer_id = ANY(\(customers)::uuid[]) AND key = ANY(\(keys)::text[])
      """, logger: logger)
    for try await (customer, key, text, number, flag) in values.decode((UUID, String, String?, Double?, Bool?).self) {
      let literal: SegmentRule.Literal? = text.map { .text($0) } ?? number.map { .number($0) } ?? flag.map { .boolean($0) }
      attributes[customer, default: [:]][key] = literal
    }
    return (tags, attributes)
  }
}

extension SegmentRule.Literal {
  var text: String? { if case .text(let value) = self { value } else { nil } }
  var number: Double? { if case .number(let value) = self { value } else { nil } }
  var boolean: Bool? { if case .boolean(let value) = self { value } else { nil } }
}
