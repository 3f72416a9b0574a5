import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import SwiftProtobuf

/// How the operator CLI reaches the gateway's admin service.
struct AdminConnection: ParsableArguments {
  @Option(help: "The gateway's address.")
  var gateway = "127.0.0.1:50050"

  @Option(help: "An API key with the admin scope (default: $RAPPORT_ADMIN_KEY).")
  var adminKey: String?

  @OptionGroup var tls: ClientTLS

  /// Calls the admin service with the admin key; a refusal becomes the CLI's error message.
  func call<Result: Sendable>(
    _ body: @Sendable (Rapport_Gateway_V1_PartnerAdmin.Client<HTTP2ClientTransport.Posix>, Metadata) async throws -> Result
  ) async throws -> Result {
    guard let key = adminKey ?? ProcessInfo.processInfo.environment["RAPPORT_ADMIN_KEY"], !key.isEmpty else {
      throw ValidationError("an admin key is required: --admin-key or RAPPORT_ADMIN_KEY")
    }
    do {
      return try await withClient(try HostPort(parsing: gateway), security: tls.security, timeout: .seconds(10)) { client in
        try await body(.init(wrapping: client), ["authorization": "Bearer \(key)"])
      }
    } catch let error as RPCError {
      throw CallFailed(error)
    }
  }
}

/// A call the CLI made was refused: printed as `Error: <code>: <message>`, without the usage text that
/// ArgumentParser adds to a `ValidationError` (the command line was fine).
struct CallFailed: Error, CustomStringConvertible {
  let description: String
  init(_ error: RPCError) { description = "\(error.code): \(error.message)" }
}

/// Prints a message as JSON (field names as in the .proto files).
func printJSON(_ message: some SwiftProtobuf.Message) throws {
  var options = JSONEncodingOptions()
  options.preserveProtoFieldNames = true
  print(try message.jsonString(options: options))
}

/// `rapport partners create|list|disable`.
struct Partners: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Manage partners (needs an admin key).", subcommands: [Create.self, List.self, Disable.self])

  struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a partner.")
    @OptionGroup var connection: AdminConnection
    @Option(help: "The partner's name.") var name: String
    @Option(help: "Who to call about this integration.") var contact = ""

    func run() async throws {
      let (name, contact) = (name, contact)
      try printJSON(try await connection.call { admin, metadata in
        try await admin.createPartner(.with { $0.name = name; $0.contact = contact }, metadata: metadata)
      })
    }
  }

  struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List partners.")
    @OptionGroup var connection: AdminConnection

    func run() async throws {
      try printJSON(try await connection.call { admin, metadata in try await admin.listPartners(.init(), metadata: metadata) })
    }
  }

  struct Disable: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Disable a partner: none of its keys is accepted any more.")
    @OptionGroup var connection: AdminConnection
    @Argument(help: "The partner's id.") var partner: String

    func run() async throws {
      let partner = partner
      try printJSON(try await connection.call { admin, metadata in
        try await admin.disablePartner(.with { $0.partnerID = partner }, metadata: metadata)
      })
    }
  }
}

/// `rapport keys create|list|revoke|rotate`.
struct Keys: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Manage partners' API keys (needs an admin key).",
    subcommands: [Create.self, List.self, Revoke.self, Rotate.self])

  struct Create: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a key; prints it once (only its hash is kept).")
    @OptionGroup var connection: AdminConnection
    @Option(help: "The partner's id.") var partner: String
    @Option(help: "A scope (repeat): customers:read, customers:write, orders:read, orders:write, tickets:read, tickets:write, views:read, admin.")
    var scope: [String]
    @Option(help: "Bind the key to a company (repeat); unbound keys see everything their scopes allow.") var company: [String] = []
    @Option(help: "Expire after this many hours (default: never).") var expiresInHours: Double?
    @Option(help: "Requests per second (default: the gateway's).") var rate: Int32 = 0
    @Option(help: "Burst (default: the gateway's).") var burst: Int32 = 0

    func run() async throws {
      let request = Rapport_Gateway_V1_CreateKeyRequest.with {
        $0.partnerID = partner
        $0.scopes = scope
        $0.companyIds = company
        if let expiresInHours { $0.expireTime = .init(date: Date().addingTimeInterval(expiresInHours * 3600)) }
        $0.ratePerSecond = rate
        $0.burst = burst
      }
      try printJSON(try await connection.call { admin, metadata in try await admin.createKey(request, metadata: metadata) })
    }
  }

  struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List a partner's keys (never the secrets).")
    @OptionGroup var connection: AdminConnection
    @Option(help: "The partner's id.") var partner: String

    func run() async throws {
      let partner = partner
      try printJSON(try await connection.call { admin, metadata in
        try await admin.listKeys(.with { $0.partnerID = partner }, metadata: metadata)
      })
    }
  }

  struct Revoke: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Revoke a key now.")
    @OptionGroup var connection: AdminConnection
    @Argument(help: "The key's id.") var key: String

    func run() async throws {
      let key = key
      try printJSON(try await connection.call { admin, metadata in
        try await admin.revokeKey(.with { $0.keyID = key }, metadata: metadata)
      })
    }
  }

  struct Rotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Create a successor key; the old one stays valid for the overlap, then ends.")
    @OptionGroup var connection: AdminConnection
    @Argument(help: "The key's id.") var key: String
    @Option(help: "Hours the old key stays valid (default 24).") var overlapHours: Double = 24

    func run() async throws {
      let request = Rapport_Gateway_V1_RotateKeyRequest.with {
        $0.keyID = key
        $0.oldKeyEndTime = .init(date: Date().addingTimeInterval(overlapHours * 3600))
      }
      try printJSON(try await connection.call { admin, metadata in try await admin.rotateKey(request, metadata: metadata) })
    }
  }
}

/// `rapport audit`: the gateway's audit log, newest first.
struct Audit: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show the gateway's audit log: refused calls and writes (needs an admin key).")
  @OptionGroup var connection: AdminConnection
  @Option(help: "Only this partner's calls.") var partner = ""
  @Option(help: "Only this method, e.g. rapport.gateway.v1.PartnerAdmin/CreateKey.") var method = ""
  @Option(help: "Only calls that ended with this gRPC status code (16 = UNAUTHENTICATED, 7 = PERMISSION_DENIED).")
  var status: Int32?
  @Option(help: "Only entries from the last this many hours.") var sinceHours: Double?
  @Option(help: "At most this many entries (1 to 1000).") var limit: Int32 = 100

  func run() async throws {
    let request = Rapport_Gateway_V1_ListAuditEntriesRequest.with {
      $0.partnerID = partner
      $0.method = method
      if let status { $0.code = status }
      if let sinceHours { $0.since = .init(date: Date().addingTimeInterval(-sinceHours * 3600)) }
      $0.pageSize = limit
    }
    try printJSON(try await connection.call { admin, metadata in try await admin.listAuditEntries(request, metadata: metadata) })
  }
}
