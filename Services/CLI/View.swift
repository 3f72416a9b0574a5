import ArgumentParser
import Foundation
import GRPCCore
import RapportCore
import RapportLocal
import RapportProtos
import SwiftProtobuf

/// `rapport view`: the 360° view of one customer, through the gateway.
struct View: AsyncParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Show a customer's 360° view (by email or id).")

  @Argument(help: "The customer's email address or id.")
  var customer: String

  @Option(help: "The gateway's address.")
  var gateway = "127.0.0.1:50050"

  @Option(help: "Deadline for the whole view, in milliseconds.")
  var timeoutMs = 2000

  @Flag(help: "Print the response as JSON.")
  var json = false

  @OptionGroup var tls: ClientTLS

  @Option(help: "An API key with the views:read scope, when the gateway requires keys (default: $RAPPORT_API_KEY).")
  var apiKey: String?

  func run() async throws {
    let request = Rapport_Gateway_V1_GetCustomerViewRequest.with {
      if UUID(uuidString: customer) != nil { $0.customerID = customer } else { $0.email = customer }
    }
    var options = CallOptions.defaults
    options.timeout = .milliseconds(timeoutMs)
    var metadata: Metadata = [:]
    if let key = apiKey ?? ProcessInfo.processInfo.environment["RAPPORT_API_KEY"], !key.isEmpty {
      metadata.addString("Bearer \(key)", forKey: "authorization")
    }
    let response: Rapport_Gateway_V1_GetCustomerViewResponse
    do {
      response = try await withClient(try HostPort(parsing: gateway), security: tls.security) { client in
        try await Rapport_Gateway_V1_PartnerGateway.Client(wrapping: client).getCustomerView(
          request, metadata: metadata, options: options)
      }
    } catch let error as RPCError {
      throw CallFailed(error)
    }
    if json {
      var options = JSONEncodingOptions()
      options.preserveProtoFieldNames = true
      print(try response.jsonString(options: options))
    } else {
      print(Self.render(response.view))
    }
  }

  static func render(_ view: Rapport_Gateway_V1_CustomerView) -> String {
    var out: [String] = []
    let c = view.customer
    out.append("\(c.givenName) \(c.familyName) <\(c.email)>  id \(c.id)")
    out.append("  customer since \(day(c.createTime)) via \(name(c.channel))")
    out.append("")
    out.append("Recent orders (\(view.recentOrders.count))")
    for order in view.recentOrders {
      out.append("  \(day(order.createTime))  \(money(order.total).padding(toLength: 14, withPad: " ", startingAt: 0)) \(name(order.status))  \(order.lines.count) line(s)  \(order.id)")
    }
    let summary = view.orderSummary
    if summary.orderCount > 0 {
      out.append(
        "  \(summary.orderCount) order(s), \(summary.openOrderCount) open; totals \(summary.totals.map(money).joined(separator: ", "))"
          + (summary.refunded.isEmpty ? "" : "; refunded \(summary.refunded.map(money).joined(separator: ", "))"))
    }
    out.append("")
    out.append("Open tickets (\(view.openTickets.count))")
    for ticket in view.openTickets {
      out.append("  \(day(ticket.createTime))  [\(name(ticket.priority))] \(ticket.subject)  \(ticket.id)")
    }
    let help = view.supportSummary
    if help.ticketCount > 0 {
      out.append(
        "  \(help.ticketCount) ticket(s), \(help.openCount) open"
          + (help.ratedCount > 0 ? String(format: ", CSAT %.1f from %d rating(s)", help.averageCsat, help.ratedCount) : ""))
    }
    out.append("")
    let m = view.metrics
    out.append("Metrics")
    out.append("  orders \(m.orderCount), revenue \(m.revenue.map(money).joined(separator: ", ")), open tickets \(m.openTicketCount)")
    if m.hasFirstOrderTime { out.append("  first order \(day(m.firstOrderTime)), last order \(day(m.lastOrderTime))") }
    if !m.netRevenue.isEmpty {
      out.append(
        "  net revenue \(m.netRevenue.map(money).joined(separator: ", ")), average order \(m.averageOrderValue.map(money).joined(separator: ", "))"
          + (m.cancelledOrderCount > 0 ? ", \(m.cancelledOrderCount) cancelled" : ""))
    }
    if m.hasRfm {
      let r = m.rfm
      out.append(
        "  RFM \(r.recencyScore)\(r.frequencyScore)\(r.monetaryScore) \(segmentName(r.segment)): last order \(r.recencyDays) day(s) ago, "
          + "\(r.frequency) order(s), \(money(r.monetary)) (quintiles of \(day(r.edgesComputedAt)))")
    }
    if m.hasPrediction {
      let p = m.prediction
      out.append(
        String(
          format: "  12-month CLV %@, churn probability %.0f%%, %.1f purchase(s) expected of %@ each (model of %@)",
          money(p.clv12M), p.churnProbability * 100, p.expectedPurchases12M, money(p.expectedSpend), day(p.modelFittedAt)))
    }
    if !m.segmentIds.isEmpty { out.append("  segments: \(m.segmentIds.joined(separator: ", "))") }
    if !m.recommendations.isEmpty {
      out.append("  recommended: \(m.recommendations.map { "\($0.title) (\($0.sku))" }.joined(separator: ", "))")
    }
    out.append("")
    out.append("Sections")
    for section in view.sections {
      let status = section.code == 0 ? "OK" : "\(codeName(section.code)) — \(section.message)"
      let asOf = section.hasAsOf ? "  as of \(ISO8601DateFormatter().string(from: section.asOf.date))" : ""
      out.append("  \(section.name.padding(toLength: 15, withPad: " ", startingAt: 0)) \(status)\(asOf)")
    }
    return out.joined(separator: "\n")
  }

  static func money(_ money: Rapport_Common_V1_Money) -> String {
    let digits = ["JPY", "KRW", "VND", "CLP", "ISK"].contains(money.currency) ? 0 : 2
    let divisor = digits == 0 ? 1 : 100
    let whole = money.amountMinor / Int64(divisor)
    let fraction = abs(money.amountMinor % Int64(divisor))
    return digits == 0 ? "\(money.currency) \(whole)" : "\(money.currency) \(whole).\(fraction < 10 ? "0" : "")\(fraction)"
  }

  static func day(_ timestamp: Google_Protobuf_Timestamp) -> String {
    String(ISO8601DateFormatter().string(from: timestamp.date).prefix(10))
  }

  /// `Champions`, `Can't lose them`, … as docs/ANALYTICS.md names them.
  static func segmentName(_ segment: Rapport_Analytics_V1_RfmSegment) -> String {
    switch segment {
    case .champions: "Champions"
    case .loyal: "Loyal"
    case .potentialLoyalist: "Potential loyalist"
    case .new: "New"
    case .promising: "Promising"
    case .needsAttention: "Needs attention"
    case .atRisk: "At risk"
    case .cantLoseThem: "Can't lose them"
    case .hibernating: "Hibernating"
    case .lost: "Lost"
    default: "unscored"
    }
  }

  /// An enum value's case name, e.g. `web`, `pending`.
  static func name<E: SwiftProtobuf.Enum>(_ value: E) -> String { "\(value)" }

  /// The canonical name of a gRPC status code.
  static func codeName(_ code: Int32) -> String {
    let names: [Int32: String] = [
      1: "CANCELLED", 2: "UNKNOWN", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND", 7: "PERMISSION_DENIED",
      8: "RESOURCE_EXHAUSTED", 13: "INTERNAL", 14: "UNAVAILABLE", 16: "UNAUTHENTICATED",
    ]
    return names[code] ?? "code \(code)"
  }
}

/// `rapport status`: each service's health.
struct StatusCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "status", abstract: "Show each service's health status.")

  @OptionGroup var tls: ClientTLS

  func run() async throws {
    for name in Stack.order {
      let address = HostPort(host: "127.0.0.1", port: Stack.defaultPorts[name]!)
      var options = CallOptions.defaults
      options.timeout = .seconds(1)
      let status = (try? await withClient(address, security: tls.security) { client in
        try await Grpc_Health_V1_Health.Client(wrapping: client).check(.init(), options: options).status
      }).map { "\($0)" } ?? "unreachable"
      print("\(name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(address)  \(status)")
    }
  }
}
