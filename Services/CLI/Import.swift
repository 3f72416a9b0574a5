import ArgumentParser
import CSV
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos

/// `rapport import customers FILE.csv`: streams a CSV file to `CustomerService.ImportCustomers`.
struct Import: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Bulk-import data from a file.", subcommands: [ImportCustomers.self, ImportOrders.self])
}

struct ImportCustomers: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "customers",
    abstract: "Import customers from a CSV file with a header row.",
    discussion: """
      Columns (any order, unknown ones ignored): email, phone, given_name, family_name, channel (web, mobile, \
      store, marketplace, b2b, email, phone, chat), external_id (an id in the channel's system), tags \
      (separated by ';'), language. A row needs an email, phone or external_id. Rows whose identity already \
      belongs to a customer change nothing; re-running a file is safe.
      """)

  @Argument(help: "The CSV file.")
  var file: String

  @Option(help: "The customer service's address.")
  var customer = "127.0.0.1:50051"

  @OptionGroup var tls: ClientTLS

  func run() async throws {
    let result = try await withClient(try HostPort(parsing: customer), security: tls.security) { client in
      try await CustomerCSV.importFile(
        file, into: Rapport_Customer_V1_CustomerService.Client(wrapping: client), progress: CustomerCSV.progressBar)
    }
    FileHandle.standardError.write(Data("\n".utf8))
    print(CustomerCSV.summary(result.response, seconds: result.seconds))
  }
}

/// Reading customer CSV files and streaming them to the customer service.
enum CustomerCSV {
  static let channels: [String: Rapport_Common_V1_Channel] = [
    "web": .web, "mobile": .mobile, "store": .store, "marketplace": .marketplace, "b2b": .b2B, "email": .email,
    "phone": .phone, "chat": .chat,
  ]

  /// Streams every row of `path`; `progress` is called with the number of rows sent so far.
  static func importFile(
    _ path: String, into customers: Rapport_Customer_V1_CustomerService.Client<HTTP2ClientTransport.Posix>,
    progress: @escaping @Sendable (Int64, Int64) -> Void
  ) async throws -> (response: Rapport_Customer_V1_ImportCustomersResponse, seconds: Double) {
    let size = try fileSize(path)
    let started = ContinuousClock.now
    let response = try await customers.importCustomers { writer in
      let (reader, column) = try open(path)
      var number: Int64 = 1  // the header is row 1
      var bytes: Int64 = 0
      while let fields = reader.next() {
        number += 1
        bytes += Int64(fields.reduce(fields.count) { $0 + $1.utf8.count })
        func value(_ name: String) -> String { column[name].flatMap { $0 < fields.count ? fields[$0] : nil } ?? "" }
        try await writer.write(.with {
          $0.rowNumber = number
          $0.email = value("email")
          $0.phone = value("phone")
          $0.givenName = value("given_name")
          $0.familyName = value("family_name")
          let channel = value("channel").trimmingCharacters(in: .whitespaces).lowercased()
          $0.channel = channel.isEmpty ? .unspecified : channels[channel] ?? .UNRECOGNIZED(-1)
          $0.externalID = value("external_id")
          $0.tags = value("tags").split(separator: ";").map { String($0) }
          $0.language = value("language")
        })
        if number % 1000 == 0 { progress(bytes, size) }
      }
      if let error = reader.error { throw ValidationError("\(path): \(error)") }
      progress(size, size)
    }
    let elapsed = ContinuousClock.now - started
    return (response, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
  }

  /// The size of a readable file (for progress), or a usage error.
  static func fileSize(_ path: String) throws -> Int64 {
    guard FileManager.default.isReadableFile(atPath: path) else { throw ValidationError("cannot open \(path)") }
    return Int64((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
  }

  /// A CSV file with a header row, and each (trimmed, lower-cased) column name's index.
  static func open(_ path: String) throws -> (CSVReader, [String: Int]) {
    // The whole file as one string: Foundation's InputStream, which CSVReader's streaming initialiser
    // needs, misbehaves on Linux (swift-corelibs-foundation). Fine for files of a few million rows.
    let reader = try CSVReader(string: try String(contentsOfFile: path, encoding: .utf8), hasHeaderRow: true)
    let header = (reader.headerRow ?? []).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
    return (reader, Dictionary(header.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first }))
  }

  /// A one-line progress bar on standard error, redrawn in place.
  static let progressBar: @Sendable (Int64, Int64) -> Void = { done, total in
    let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 0
    let width = 30
    let filled = Int(fraction * Double(width))
    let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
    FileHandle.standardError.write(Data("\r[\(bar)] \(Int(fraction * 100))%".utf8))
  }

  static func summary(_ response: Rapport_Customer_V1_ImportCustomersResponse, seconds: Double) -> String {
    summary(
      rows: response.rows, what: "rows", created: response.created, existing: response.existing, failed: response.failed,
      errors: response.errors, seconds: seconds)
  }

  /// "N rows in S s (R rows/s): C created, E already known, F failed", then the first 20 errors.
  static func summary(
    rows: Int64, what: String, created: Int64, existing: Int64, failed: Int64,
    errors: [Rapport_Customer_V1_ImportRowError], seconds: Double
  ) -> String {
    var lines = [
      "\(rows) \(what) in \(String(format: "%.1f", seconds)) s (\(Int(Double(rows) / max(seconds, 0.001))) \(what)/s): "
        + "\(created) created, \(existing) already known, \(failed) failed"
    ]
    for error in errors.prefix(20) { lines.append("  row \(error.rowNumber): \(error.message)") }
    if errors.count > 20 { lines.append("  … \(failed - 20) more failed rows") }
    return lines.joined(separator: "\n")
  }
}
