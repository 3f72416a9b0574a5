import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportProtos

/// A customer as stored.
struct CustomerRecord: Sendable {
  var id: UUID
  var email: String
  var givenName: String
  var familyName: String
  var phone: String
  var channel: Int
  var createdAt: Date
  var updatedAt: Date

  var proto: Rapport_Customer_V1_Customer {
    .with {
      $0.id = id.uuidString.lowercased()
      $0.email = email
      $0.givenName = givenName
      $0.familyName = familyName
      $0.phone = phone
      $0.channel = Rapport_Common_V1_Channel(rawValue: channel) ?? .unspecified
      $0.createTime = .init(microsecondsOf: createdAt)
      $0.updateTime = .init(microsecondsOf: updatedAt)
    }
  }
}

/// Customer SQL; nothing else in the service touches the database.
struct CustomerStore: Sendable {
  enum Failure: Error { case emailTaken }

  let client: PostgresClient
  let logger: Logger
  private let outbox = CustomerMigrations.outbox
  private static let columns = "id, email, given_name, family_name, phone, channel, created_at, updated_at"

  /// Inserts a customer and its `CustomerCreated` event in one transaction.
  func create(_ record: CustomerRecord) async throws -> CustomerRecord {
    do {
      return try await client.transaction(logger: logger) { connection in
        var record = record
        let rows = try await connection.query(
          """
          INSERT INTO customer.customers (\(unescaped: Self.columns))
          VALUES (\(record.id), \(record.email), \(record.givenName), \(record.familyName), \(record.phone),
                  \(record.channel), \(record.createdAt), \(record.updatedAt))
          RETURNING created_at, updated_at
          """, logger: logger)
        // The stored times (microseconds), so this answer equals every later read.
        for try await (created, updated) in rows.decode((Date, Date).self) {
          (record.createdAt, record.updatedAt) = (created, updated)
        }
        let event = Outbox.event(
          aggregateType: "customer", aggregateID: record.proto.id, occurredAt: record.createdAt,
          .customerCreated(.with {
            $0.customerID = record.proto.id
            $0.channel = record.proto.channel
          }))
        try await outbox.append(event, on: connection, logger: logger)
        return record
      }
    } catch let error as PSQLError where error.isUniqueViolation {
      throw Failure.emailTaken
    }
  }

  func get(id: UUID) async throws -> CustomerRecord? {
    try await first(client.query("SELECT \(unescaped: Self.columns) FROM customer.customers WHERE id = \(id)", logger: logger))
  }

  func find(email: String) async throws -> CustomerRecord? {
    try await first(
      client.query("SELECT \(unescaped: Self.columns) FROM customer.customers WHERE email = \(email)", logger: logger))
  }

  private func first(_ rows: PostgresRowSequence) async throws -> CustomerRecord? {
    for try await (id, email, given, family, phone, channel, created, updated) in rows.decode(
      (UUID, String, String, String, String, Int, Date, Date).self)
    {
      return CustomerRecord(
        id: id, email: email, givenName: given, familyName: family, phone: phone, channel: channel,
        createdAt: created, updatedAt: updated)
    }
    return nil
  }
}
