import Foundation
import PostgresNIO
import RapportProtos
import GRPCCore
import GRPCProtobuf
import RapportCore
import RapportTesting
import SwiftProtobuf
import Testing

/// Configuration for a service under test: loopback, any free port, its own role on `database`.
func testConfig(_ name: String, _ database: DatabaseURL, port: Int = 0) -> CommonConfig {
  CommonConfig(
    name: name, listen: HostPort(host: "127.0.0.1", port: port),
    databaseURL: name == "gateway" ? nil : database.role(of: name), maxDatabaseConnections: 4)
}

/// Expects `body` to fail with `code`; with `field`, expects the message and the BadRequest detail to
/// name that field; with `mentioning`, expects the message to contain that text.
func expectStatus<T: Sendable>(
  _ code: RPCError.Code, field: String? = nil, mentioning text: String? = nil,
  sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> T
) async {
  do {
    let value = try await body()
    Issue.record("expected \(code), got \(value)", sourceLocation: sourceLocation)
  } catch let error as RPCError {
    #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    if let text { #expect(error.message.contains(text), "message: \(error.message)", sourceLocation: sourceLocation) }
    if let field {
      #expect(error.message.hasPrefix("\(field):"), "message: \(error.message)", sourceLocation: sourceLocation)
      let details = try? error.unpackGoogleRPCStatus()
      #expect(details?.details.first?.badRequest?.violations.first?.field == field, sourceLocation: sourceLocation)
    }
  } catch {
    Issue.record("expected RPCError \(code), got \(error)", sourceLocation: sourceLocation)
  }
}

/// Row count of a table, read as the superuser.
func count(_ table: String, _ database: DatabaseURL) async throws -> Int {
  try await TestDatabase.scalar("SELECT count(*)::bigint FROM \(table)", on: database)
}

/// The event types in a service's outbox, in sequence order.
func eventTypes(_ schema: String, _ database: DatabaseURL) async throws -> [String] {
  try await TestDatabase.column("SELECT type FROM \(schema).outbox ORDER BY sequence", on: database)
}

/// The events of `type` in a service's outbox, in sequence order, decoded.
func outboxEvents(_ schema: String, type: String, _ database: DatabaseURL) async throws -> [Rapport_Events_V1_Event] {
  let payloads = try await TestDatabase.column(
    "SELECT payload FROM \(schema).outbox WHERE type = '\(type)' ORDER BY sequence", as: ByteBuffer.self, on: database)
  return try payloads.map { try Rapport_Events_V1_Event(serializedBytes: Array($0.readableBytesView)) }
}

extension SwiftProtobuf.Message {
  /// A copy changed by `change`.
  func changed(_ change: (inout Self) -> Void) -> Self {
    var copy = self
    change(&copy)
    return copy
  }
}
