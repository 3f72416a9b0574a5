import Foundation
import PostgresNIO
import RapportCore
import RapportProtos

/// Consent decisions and the interaction timeline.
extension CustomerStore {
  typealias Decision = Rapport_Customer_V1_ConsentDecision
  typealias Interaction = Rapport_Customer_V1_Interaction

  /// Records a decision in the history; it becomes current unless a newer decision for the same purpose
  /// and channel exists. Emits `ConsentChanged`.
  func setConsent(_ decision: Decision, for id: UUID) async throws -> [Decision] {
    try await client.transaction(logger: logger) { connection in
      let customer = try await lockActive(id, on: connection)
      let now = Date.databaseNow
      let decided = decision.decideTime.date
      try await connection.query(
        """
        INSERT INTO customer.consent_history (id, customer_id, purpose, channel, granted, source, decided_at, recorded_at)
        VALUES (\(UUID()), \(id), \(decision.purpose.rawValue), \(decision.channel.rawValue), \(decision.granted),
                \(decision.source), \(decided), \(now))
        """, logger: logger)
      try await connection.query(
        """
        INSERT INTO customer.consent_current (customer_id, purpose, channel, granted, source, decided_at, recorded_at)
        VALUES (\(id), \(decision.purpose.rawValue), \(decision.channel.rawValue), \(decision.granted),
                \(decision.source), \(decided), \(now))
        ON CONFLICT (customer_id, purpose, channel) DO UPDATE SET granted = EXCLUDED.granted,
          source = EXCLUDED.source, decided_at = EXCLUDED.decided_at, recorded_at = EXCLUDED.recorded_at
        WHERE EXCLUDED.decided_at >= customer.consent_current.decided_at
        """, logger: logger)
      try await emit(
        .consentChanged(.with {
          $0.customerID = customer.id
          $0.purpose = decision.purpose
          $0.channel = decision.channel
          $0.granted = decision.granted
          $0.source = decision.source
          $0.decideTime = decision.decideTime
        }), about: customer.id, at: now, on: connection)
      return try await decisions(
        "SELECT purpose, channel, granted, source, decided_at, recorded_at FROM customer.consent_current WHERE customer_id = \(id) ORDER BY purpose, channel",
        on: connection)
    }
  }

  /// Current decisions (by purpose, channel) and the history (newest first).
  func consent(of id: UUID) async throws -> (current: [Decision], history: [Decision]) {
    let current = try await decisions(
      "SELECT purpose, channel, granted, source, decided_at, recorded_at FROM customer.consent_current WHERE customer_id = \(id) ORDER BY purpose, channel")
    let history = try await decisions(
      "SELECT purpose, channel, granted, source, decided_at, recorded_at FROM customer.consent_history WHERE customer_id = \(id) ORDER BY decided_at DESC, recorded_at DESC")
    return (current, history)
  }

  private func decisions(_ query: PostgresQuery, on connection: PostgresConnection? = nil) async throws -> [Decision] {
    let rows = try await rows(query, on: connection)
    var result: [Decision] = []
    for try await (purpose, channel, granted, source, decided, recorded) in rows.decode(
      (Int, Int, Bool, String, Date, Date).self)
    {
      result.append(.with {
        $0.purpose = .init(rawValue: purpose) ?? .unspecified
        $0.channel = .init(rawValue: channel) ?? .unspecified
        $0.granted = granted
        $0.source = source
        $0.decideTime = .init(microsecondsOf: decided)
        $0.recordTime = .init(microsecondsOf: recorded)
      })
    }
    return result
  }

  /// Stores an interaction and emits `InteractionRecorded`; a repeat of (channel, external reference)
  /// returns the stored one. The customer must be live (a merged id is refused: record on the survivor).
  func record(_ interaction: Interaction) async throws -> Interaction {
    guard let customerID = UUID(uuidString: interaction.customerID) else { throw RPCFailure.internal("bad id") }
    let external = interaction.externalReference.isEmpty ? nil : interaction.externalReference
    return try await retryingTransaction { connection in
      if let external, let stored = try await interactions(
        "\(unescaped: Self.interactionSelect) WHERE channel = \(interaction.channel.rawValue) AND external_ref = \(external)",
        on: connection).first
      {
        return stored
      }
      _ = try await lockActive(customerID, on: connection)
      let id = UUID()
      let now = Date.databaseNow
      try await connection.query(
        """
        INSERT INTO customer.interactions (id, customer_id, channel, kind, summary, occurred_at, external_ref, recorded_at)
        VALUES (\(id), \(customerID), \(interaction.channel.rawValue), \(interaction.kind.rawValue),
                \(interaction.summary), \(interaction.occurTime.date), \(external), \(now))
        """, logger: logger)
      try await emit(
        .interactionRecorded(.with {
          $0.interactionID = id.lowercased
          $0.customerID = interaction.customerID
          $0.channel = interaction.channel
          $0.kind = interaction.kind
          $0.occurTime = interaction.occurTime
        }), about: interaction.customerID, at: now, on: connection)
      return try await interactions("\(unescaped: Self.interactionSelect) WHERE id = \(id)", on: connection)[0]
    }
  }

  /// A customer's interactions, newest first, after the keyset token; `limit` nil means all.
  func interactions(of id: UUID, after token: PageToken?, limit: Int?) async throws -> [Interaction] {
    try await interactions(
      """
      \(unescaped: Self.interactionSelect) WHERE customer_id = \(id)
        AND \(after: token, time: "occurred_at", id: "id", descending: true)
      ORDER BY occurred_at DESC, id DESC LIMIT \(limit)
      """)
  }

  private static let interactionSelect =
    "SELECT id, customer_id, channel, kind, summary, occurred_at, external_ref, recorded_at FROM customer.interactions"

  private func interactions(_ query: PostgresQuery, on connection: PostgresConnection? = nil) async throws -> [Interaction] {
    let rows = try await rows(query, on: connection)
    var result: [Interaction] = []
    for try await (id, customer, channel, kind, summary, occurred, external, recorded) in rows.decode(
      (UUID, UUID, Int, Int, String, Date, String?, Date).self)
    {
      result.append(.with {
        $0.id = id.lowercased
        $0.customerID = customer.lowercased
        $0.channel = .init(rawValue: channel) ?? .unspecified
        $0.kind = .init(rawValue: kind) ?? .unspecified
        $0.summary = summary
        $0.occurTime = .init(microsecondsOf: occurred)
        $0.externalReference = external ?? ""
        $0.recordTime = .init(microsecondsOf: recorded)
      })
    }
    return result
  }
}
