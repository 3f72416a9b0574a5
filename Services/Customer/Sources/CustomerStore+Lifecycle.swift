import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Merge, erase and export: the changes that touch every table of a customer at once.
extension CustomerStore {
  /// Moves the duplicate's identities, interactions, company links and consent (newest decision wins) to
  /// the survivor, fills the survivor's empty profile fields from the duplicate, turns the duplicate into
  /// a tombstone and emits `CustomerMerged` — one transaction.
  func merge(survivor survivorID: UUID, duplicate duplicateID: UUID) async throws -> Customer {
    try await client.transaction(logger: logger) { connection in
      // Both rows locked in id order, so two merges of the same pair cannot deadlock.
      var locked: [UUID: Customer] = [:]
      for id in [survivorID, duplicateID].sorted(by: { $0.uuidString < $1.uuidString }) {
        locked[id] = try await lockActive(id, on: connection)
      }
      guard var survivor = locked[survivorID], let duplicate = locked[duplicateID] else {
        throw RPCFailure.internal("merge lost a row")
      }
      let now = Date.databaseNow
      for statement: PostgresQuery in [
        "UPDATE customer.identities SET customer_id = \(survivorID) WHERE customer_id = \(duplicateID)",
        "UPDATE customer.interactions SET customer_id = \(survivorID) WHERE customer_id = \(duplicateID)",
        "UPDATE customer.consent_history SET customer_id = \(survivorID) WHERE customer_id = \(duplicateID)",
        """
        INSERT INTO customer.company_contacts (company_id, customer_id, role, linked_at)
        SELECT company_id, \(survivorID), role, linked_at FROM customer.company_contacts WHERE customer_id = \(duplicateID)
        ON CONFLICT (company_id, customer_id) DO NOTHING
        """,
        "DELETE FROM customer.company_contacts WHERE customer_id = \(duplicateID)",
        """
        INSERT INTO customer.consent_current (customer_id, purpose, channel, granted, source, decided_at, recorded_at)
        SELECT \(survivorID), purpose, channel, granted, source, decided_at, recorded_at
        FROM customer.consent_current WHERE customer_id = \(duplicateID)
        ON CONFLICT (customer_id, purpose, channel) DO UPDATE SET granted = EXCLUDED.granted,
          source = EXCLUDED.source, decided_at = EXCLUDED.decided_at, recorded_at = EXCLUDED.recorded_at
        WHERE EXCLUDED.decided_at > customer.consent_current.decided_at
        """,
        "DELETE FROM customer.consent_current WHERE customer_id = \(duplicateID)",
        // Older tombstones of the duplicate now point straight at the survivor: reads follow one hop.
        "UPDATE customer.customers SET merged_into = \(survivorID) WHERE merged_into = \(duplicateID)",
        """
        UPDATE customer.customers SET state = \(Self.merged), merged_into = \(survivorID), given_name = '',
          family_name = '', tags = '{}', extras = '{}', language = '', currency = '', version = version + 1,
          updated_at = \(now)
        WHERE id = \(duplicateID)
        """,
      ] {
        try await connection.query(statement, logger: logger)
      }
      Self.fill(&survivor, from: duplicate)
      try await writeProfile(survivor, at: now, on: connection)
      try await refreshDerived([duplicateID], on: connection)
      try await emit(
        .customerMerged(.with {
          $0.survivorID = survivor.id
          $0.duplicateID = duplicate.id
        }), about: survivor.id, at: now, on: connection)
      return try await load(survivorID, on: connection) ?? survivor
    }
  }

  /// The survivor keeps what it has; empty fields take the duplicate's, tags and addresses are united,
  /// attributes the survivor lacks are copied.
  static func fill(_ survivor: inout Customer, from duplicate: Customer) {
    if survivor.givenName.isEmpty { survivor.givenName = duplicate.givenName }
    if survivor.familyName.isEmpty { survivor.familyName = duplicate.familyName }
    if survivor.preferences.language.isEmpty { survivor.preferences.language = duplicate.preferences.language }
    if survivor.preferences.currency.isEmpty { survivor.preferences.currency = duplicate.preferences.currency }
    if survivor.preferences.contactChannel == .unspecified {
      survivor.preferences.contactChannel = duplicate.preferences.contactChannel
    }
    survivor.tags = Array(Set(survivor.tags + duplicate.tags)).sorted()
    for address in duplicate.addresses where !survivor.addresses.contains(address) {
      survivor.addresses.append(address)
    }
    survivor.addresses = Array(survivor.addresses.prefix(CustomerInput.maxAddresses))
    for (key, value) in duplicate.attributes where survivor.attributes[key] == nil
      && survivor.attributes.count < CustomerInput.maxAttributes
    {
      survivor.attributes[key] = value
    }
  }

  /// Removes the customer's personal data for good and emits `CustomerErased`. Erasing an erased
  /// customer returns it unchanged; a merged id is refused (its data lives in the survivor).
  func erase(_ id: UUID, reason: String) async throws -> Customer {
    try await client.transaction(logger: logger) { connection in
      guard let current = try await load(id, on: connection, forUpdate: true) else {
        throw RPCFailure.notFound("customer", id.lowercased)
      }
      if current.state == .erased { return current }
      _ = try await lockActive(id, on: connection)
      let now = Date.databaseNow
      for statement: PostgresQuery in [
        "DELETE FROM customer.identities WHERE customer_id = \(id)",
        "DELETE FROM customer.company_contacts WHERE customer_id = \(id)",
        "DELETE FROM customer.consent_current WHERE customer_id = \(id)",
        "DELETE FROM customer.consent_history WHERE customer_id = \(id)",
        "UPDATE customer.interactions SET summary = '', external_ref = NULL WHERE customer_id = \(id)",
        """
        UPDATE customer.customers SET state = \(Self.erased), given_name = '', family_name = '', tags = '{}',
          extras = '{}', language = '', currency = '', contact_channel = 0, search_text = '',
          erased_at = \(now), erase_reason = \(reason), version = version + 1, updated_at = \(now)
        WHERE id = \(id)
        """,
      ] {
        try await connection.query(statement, logger: logger)
      }
      try await emit(.customerErased(.with { $0.customerID = id.lowercased }), about: id.lowercased, at: now, on: connection)
      return try await load(id, on: connection) ?? current
    }
  }

  /// Everything held about one customer (by its own id, merged or not).
  func export(_ id: UUID) async throws -> Rapport_Customer_V1_ExportCustomerResponse {
    guard let customer = try await load(id) else { throw RPCFailure.notFound("customer", id.lowercased) }
    var export = Rapport_Customer_V1_ExportCustomerResponse()
    export.customer = customer
    export.consentHistory = try await consent(of: id).history
    export.interactions = try await interactions(of: id, after: nil, limit: nil)
    let merged = try await client.query(
      "SELECT id FROM customer.customers WHERE merged_into = \(id) ORDER BY updated_at, id", logger: logger)
    for try await mergedID in merged.decode(UUID.self) { export.mergedCustomerIds.append(mergedID.lowercased) }
    export.exportTime = .init(microsecondsOf: Date.databaseNow)
    return export
  }
}
