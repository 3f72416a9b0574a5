import ArgumentParser
import CSV
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import SwiftProtobuf
import Synchronization

/// `rapport import orders FILE.csv`: streams past orders to `OrderService.ImportOrders`.
struct ImportOrders: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "orders",
    abstract: "Import past orders from a CSV file with a header row, one row per order line.",
    discussion: """
      Columns (any order, unknown ones ignored): reference (the shop's order number; consecutive rows with \
      the same reference and channel are one order's lines), channel, placed_at (RFC 3339, e.g. \
      2025-03-01T10:00:00Z), status (pending, paid, fulfilled, delivered, cancelled, refunded; default \
      pending), currency, the customer by customer_id or by email, phone and external_id (an id in the \
      channel's system), sku, title, quantity, unit_price_minor, discount_minor, tax_minor, and \
      shipping_minor (read from an order's first row). Amounts are integer minor units. Orders already \
      imported (same channel and reference) change nothing; re-running a file is safe.
      """)

  @Argument(help: "The CSV file.")
  var file: String

  @Option(help: "The order service's address.")
  var order = "127.0.0.1:50052"

  @OptionGroup var tls: ClientTLS

  func run() async throws {
    let result = try await withClient(try HostPort(parsing: order), security: tls.security) { client in
      try await OrderCSV.importFile(
        file, into: Rapport_Order_V1_OrderService.Client(wrapping: client), progress: CustomerCSV.progressBar)
    }
    FileHandle.standardError.write(Data("\n".utf8))
    let r = result.response
    print(
      CustomerCSV.summary(
        rows: r.rows, what: "orders", created: r.created, existing: r.existing, failed: r.failed, errors: r.errors,
        seconds: result.seconds))
  }
}

/// Reading order CSV files and streaming them to the order service.
enum OrderCSV {
  static let statuses: [String: Rapport_Order_V1_OrderStatus] = [
    "": .pending, "pending": .pending, "paid": .paid, "fulfilled": .fulfilled, "shipped": .fulfilled,
    "delivered": .delivered, "cancelled": .cancelled, "canceled": .cancelled, "refunded": .refunded,
  ]

  /// Streams every order of `path`. A value the file cannot express (a number that is not one, an
  /// unknown status, a malformed time) fails its order here, reported like the service's row errors.
  static func importFile(
    _ path: String, into orders: Rapport_Order_V1_OrderService.Client<HTTP2ClientTransport.Posix>,
    progress: @escaping @Sendable (Int64, Int64) -> Void
  ) async throws -> (response: Rapport_Order_V1_ImportOrdersResponse, seconds: Double) {
    let size = try CustomerCSV.fileSize(path)
    let started = ContinuousClock.now
    // Refused as UNAVAILABLE (the customer service too slow to resolve a batch's customers, say), the
    // file is sent again whole: the rows stored already count as existing the second time.
    var (response, local) = try await retryingUnavailable(retrying: { error, attempt in
      FileHandle.standardError.write(Data("\n\(error.message); sending the file again (attempt \(attempt))\n".utf8))
    }) {
      let local = LocalFailures()
      let response = try await orders.importOrders { writer in
        let (reader, column) = try CustomerCSV.open(path)
        var number: Int64 = 1  // the header is row 1
        var bytes: Int64 = 0
        var pending: Rapport_Order_V1_ImportOrdersRequest?
        var pendingKey = ""
        var broken: String?
        func flush() async throws {
          defer { (pending, broken) = (nil, nil) }
          guard let order = pending else { return }
          if let broken {
            local.add(order.rowNumber, broken)
          } else {
            try await writer.write(order)
          }
        }
        while let fields = reader.next() {
          number += 1
          bytes += Int64(fields.reduce(fields.count) { $0 + $1.utf8.count })
          func value(_ name: String) -> String {
            (column[name].flatMap { $0 < fields.count ? fields[$0] : nil } ?? "").trimmingCharacters(in: .whitespaces)
          }
          func integer(_ name: String) -> Int64 {
            let raw = value(name)
            if raw.isEmpty { return 0 }
            guard let parsed = Int64(raw) else {
              broken = broken ?? "\(name): '\(raw.prefix(40))' is not an integer"
              return 0
            }
            return parsed
          }
          let key = value("channel").lowercased() + "\u{1}" + value("reference")
          if pending == nil || key != pendingKey || value("reference").isEmpty {
            try await flush()
            pendingKey = key
            var row = Rapport_Order_V1_ImportOrdersRequest()
            row.rowNumber = number
            let channel = value("channel").lowercased()
            row.order.channel = channel.isEmpty ? .unspecified : CustomerCSV.channels[channel] ?? .UNRECOGNIZED(-1)
            row.order.channelOrderReference = value("reference")
            row.order.currency = value("currency").uppercased()
            row.order.shippingMinor = integer("shipping_minor")
            row.order.customerID = value("customer_id")
            for (kind, name) in [(Rapport_Customer_V1_IdentityKind.email, "email"), (.phone, "phone"), (.externalID, "external_id")]
            where !value(name).isEmpty {
              row.order.customerIdentities.append(.with {
                $0.kind = kind
                $0.value = value(name)
                $0.channel = row.order.channel
              })
            }
            let placed = value("placed_at")
            if let date = try? Date(placed, strategy: .iso8601) {
              row.placedTime = .init(date: date)
            } else if !placed.isEmpty {
              broken = "placed_at: '\(placed.prefix(40))' is not an RFC 3339 time"
            }
            if let status = statuses[value("status").lowercased()] {
              row.status = status
            } else {
              broken = "status: '\(value("status").prefix(40))' is not one of pending, paid, fulfilled, delivered, cancelled, refunded"
            }
            pending = row
          }
          pending?.order.lines.append(.with {
            $0.sku = value("sku")
            $0.title = value("title")
            $0.quantity = integer("quantity")
            $0.unitPriceMinor = integer("unit_price_minor")
            $0.discountMinor = integer("discount_minor")
            $0.taxMinor = integer("tax_minor")
          })
          if number % 1000 == 0 { progress(bytes, size) }
        }
        try await flush()
        if let error = reader.error { throw ValidationError("\(path): \(error)") }
        progress(size, size)
      }
      return (response, local)
    }
    local.merge(into: &response)
    let elapsed = ContinuousClock.now - started
    return (response, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
  }

  /// Orders the file itself got wrong, never sent.
  final class LocalFailures: Sendable {
    private let errors = Mutex<[Rapport_Customer_V1_ImportRowError]>([])

    func add(_ row: Int64, _ message: String) {
      errors.withLock {
        $0.append(.with {
          $0.rowNumber = row
          $0.field = String(message.prefix { $0 != ":" })
          $0.message = message
        })
      }
    }

    func merge(into response: inout Rapport_Order_V1_ImportOrdersResponse) {
      let local = errors.withLock { $0 }
      response.rows += Int64(local.count)
      response.failed += Int64(local.count)
      response.errors = (response.errors + local).sorted { $0.rowNumber < $1.rowNumber }
    }
  }
}
