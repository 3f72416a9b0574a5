import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos

/// `rapport segments`: the analytics service's rule segments (docs/ANALYTICS.md, "Rule segments").
struct Segments: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "List, define and read rule segments.", subcommands: [List.self, Put.self, Members.self],
    defaultSubcommand: List.self)

  struct Connection: ParsableArguments {
    @Option(help: "The analytics service's address.") var analytics = "127.0.0.1:50054"
    @OptionGroup var tls: ClientTLS

    func run<Result: Sendable>(
      _ body: (Rapport_Analytics_V1_AnalyticsService.Client<HTTP2ClientTransport.Posix>) async throws -> Result
    ) async throws -> Result {
      try await withClient(try HostPort(parsing: analytics), security: tls.security, timeout: .seconds(30)) { client in
        try await body(.init(wrapping: client))
      }
    }
  }

  struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Every segment with its size, version and rule.")
    @OptionGroup var connection: Connection

    func run() async throws {
      let segments = try await connection.run { try await $0.listSegments(.init()).segments }
      if segments.isEmpty { print("no segments (define one with `rapport segments put ID RULE`)") }
      for segment in segments {
        print("\(segment.id)  \(segment.memberCount) member(s)  v\(segment.version)  \(segment.rule)")
      }
    }
  }

  struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a segment, or a new version of one.")
    @OptionGroup var connection: Connection
    @Argument(help: "The segment's id (lower-case letters, digits, '-', '_').") var id: String
    @Argument(help: "The rule, e.g. \"spent(EUR, 90) > 20000 and consented(marketing_email)\".") var rule: String
    @Option(help: "What the segment is for.") var description = ""

    func run() async throws {
      let response = try await connection.run {
        try await $0.putSegment(.with {
          $0.id = id
          $0.rule = rule
          $0.description_p = description
        })
      }
      print("\(response.segment.id) v\(response.segment.version): \(response.segment.memberCount) member(s) (\(response.entered) entered, \(response.left) left)")
    }
  }

  struct Members: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A segment's members, one customer id per line.")
    @OptionGroup var connection: Connection
    @Argument(help: "The segment's id.") var id: String

    func run() async throws {
      try await connection.run { analytics in
        try await analytics.listSegmentMemberPages(.with { $0.segmentID = id }) { response in
          for try await page in response.messages {
            print(page.members.map(\.customerID).joined(separator: "\n"))
          }
        }
      }
    }
  }
}
