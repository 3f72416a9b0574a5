import AnalyticsService
import CustomerService
import Foundation
import GRPCCore
import OrderService
import RapportCore
import RapportProtos
import RapportTesting
import SupportService
import Testing

/// Every RPC of every service with a database, walked from the generated descriptors, answers
/// UNAVAILABLE (never UNKNOWN or INTERNAL) while its database is unreachable, and the metrics count it.
/// One service at a time: a cut-off service reconnects until it stops, which loads the shared machine.
@Suite(.serialized, .hangLimit) struct DatabaseOutageTests {
  /// The services whose every RPC needs their database, with the methods they serve.
  static let services: [(name: String, methods: [MethodDescriptor])] = [
    ("customer", Rapport_Customer_V1_CustomerService.Method.descriptors),
    ("order", Rapport_Order_V1_OrderService.Method.descriptors),
    ("support", Rapport_Support_V1_SupportService.Method.descriptors),
    ("analytics", Rapport_Analytics_V1_AnalyticsService.Method.descriptors),
  ]

  @Test(arguments: services.map(\.name))
  func everyRPCIsUnavailableWhileTheDatabaseIsDown(service: String) async throws {
    let database = try await TestDatabase.create()
    // Analytics consumes feeds and publishes none.
    let feed = service == "analytics" ? [] : Rapport_Events_V1_EventFeed.Method.descriptors
    let methods = Self.services.first { $0.name == service }!.methods + feed
    let app = try build(service, database)
    try await withRunningService(app) { address in
      try await TestDatabase.cutOff(database)
      try await eventually(within: .seconds(20), "\(service) sees its database refuse connections") {
        app.health.databaseRefused && app.health.status == .notServing
      }
      try await withClient(to: address) { client in
        for method in methods {
          var code: RPCError.Code?
          do {
            _ = try await client.unary(
              request: ClientRequest(message: [UInt8]()), descriptor: method, serializer: BytesCoder(),
              deserializer: BytesCoder(), options: .defaults
            ) { try $0.message }
          } catch let error as RPCError {
            code = error.code
            // Nothing internal: no SQL, SQLSTATE, driver or Swift type names, no file paths.
            let leaks = ["PSQL", "SQLSTATE", "SELECT", "INSERT", "UPDATE", "Error", "postgres", ".swift", "/"]
            #expect(!leaks.contains { error.message.contains($0) }, "\(method): \(error.message)")
          }
          #expect(code == .unavailable, "\(method): \(String(describing: code))")
          #expect(app.metrics.calls(method.fullyQualifiedMethod, code: .unavailable) == 1, "\(method) not counted")
        }
      }
    }
  }

  /// A statement that fails inside a handler (here a table an operator renamed) reaches the client as
  /// INTERNAL "internal error", counted as such, however many interceptors the platform stacks: grpc-swift
  /// hands the outer ones such errors as UNKNOWN with the original as the cause, which the error mapping
  /// unwraps (before, the client saw UNKNOWN with an empty message).
  @Test func aStatementFailingInsideAHandlerIsInternalWithNoInternals() async throws {
    let database = try await TestDatabase.create()
    let app = try build("analytics", database)
    try await withRunningService(app) { address in
      _ = try await TestDatabase.column("ALTER TABLE analytics.rfm_edges RENAME TO rfm_edges_moved", on: database)
      try await withClient(to: address) { client in
        let api = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: client)
        await expectStatus(.internalError, mentioning: "internal error") { try await api.getRfmEdges(.init()) }
      }
      #expect(app.metrics.calls("rapport.analytics.v1.AnalyticsService/GetRfmEdges", code: .internalError) == 1)
    }
  }

  /// The service named `name` on `database`, with upstream addresses nobody listens on (no RPC here
  /// reaches them: the database is down first).
  private func build(_ name: String, _ database: DatabaseURL) throws -> ServiceApp {
    let nowhere = HostPort(host: "127.0.0.1", port: 9)
    let logger = testLogger(name)
    switch name {
    case "customer": return try CustomerApp.build(config: testConfig(name, database), logger: logger)
    case "order": return try OrderApp.build(config: testConfig(name, database), customerAddress: nowhere, logger: logger)
    case "support":
      return try SupportApp.build(
        config: testConfig(name, database), customerAddress: nowhere, orderAddress: nowhere, logger: logger)
    default:
      return try AnalyticsApp.build(
        config: testConfig(name, database), customerAddress: nowhere, orderAddress: nowhere, supportAddress: nowhere,
        logger: logger)
    }
  }
}

/// Raw message bytes, for calling any method without its generated types.
struct BytesCoder: MessageSerializer, MessageDeserializer {
  func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes { Bytes(message) }
  func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
    serializedMessageBytes.withUnsafeBytes { Array($0) }
  }
}
