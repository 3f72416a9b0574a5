import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import SwiftProtobuf

/// `rapport seed`: loads a synthetic shop through the import path (`ImportCustomers`, then
/// `ImportOrders` with each order's original time), for trying analytics and for the scale benchmark.
struct Seed: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Load a synthetic shop: customers and two years of orders, through the import RPCs.",
    discussion: """
      Customers seed-<n>@example.com buy as a BG/NBD population (purchase rates Gamma-distributed, dropping \
      out after a purchase with a Beta-distributed probability) over the last two years: 200 products \
      with Zipf popularity, 1 to 3 lines per order, four channels; 3 % of orders cancelled and 2 % \
      refunded. The same --seed gives the same shop on the same day (times count back from today's start, \
      UTC); running it again that day imports nothing twice.
      """)

  @Option(help: "Customers to create.") var customers = 1_000
  @Option(help: "Orders to import (about; never more).") var orders = 10_000
  @Option(help: "Random seed.") var seed: UInt64 = 14
  @Option(help: "The customer service's address.") var customer = "127.0.0.1:50051"
  @Option(help: "The order service's address.") var order = "127.0.0.1:50052"
  @Option(help: "Parallel order import streams.") var streams = 4
  @OptionGroup var tls: ClientTLS

  func run() async throws {
    let shop = SyntheticShop(customers: customers, orders: orders, seed: seed, now: SyntheticShop.today())
    let result = try await withClient(try HostPort(parsing: customer), security: tls.security) { customerClient in
      try await withClient(try HostPort(parsing: order), security: tls.security) { orderClient in
        try await shop.load(
          into: .init(wrapping: customerClient), .init(wrapping: orderClient), streams: streams,
          progress: { FileHandle.standardError.write(Data("\r\($0)".utf8)) })
      }
    }
    FileHandle.standardError.write(Data("\n".utf8))
    print(result.summary)
  }
}

/// A reproducible synthetic shop (see `Seed`'s discussion).
struct SyntheticShop: Sendable {
  let customers: Int
  let orders: Int
  let seed: UInt64
  let now: Date

  static let channels: [Rapport_Common_V1_Channel] = [.web, .web, .mobile, .store, .marketplace]

  struct Loaded: Sendable {
    var customers = Rapport_Customer_V1_ImportCustomersResponse()
    var orders = Rapport_Order_V1_ImportOrdersResponse()
    var customerSeconds = 0.0, orderSeconds = 0.0

    var summary: String {
      """
      customers: \(customers.rows) rows in \(String(format: "%.1f", customerSeconds)) s: \(customers.created) created, \(customers.existing) already known, \(customers.failed) failed
      orders: \(orders.rows) in \(String(format: "%.1f", orderSeconds)) s (\(Int(Double(orders.rows) / max(orderSeconds, 0.001))) orders/s): \(orders.created) created, \(orders.existing) already known, \(orders.failed) failed\(orders.errors.first.map { "; first error: row \($0.rowNumber): \($0.message)" } ?? "")
      """
    }
  }

  static func email(_ n: Int) -> String { "seed-\(n)@example.com" }

  /// Today's start (UTC): the shop's "now", so a run repeated the same day imports the same orders.
  static func today() -> Date { Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 86_400).rounded(.down) * 86_400) }

  /// Every order of the shop, customer by customer, oldest first per customer: `orders` of them when the
  /// customers can place that many (their purchase rates are scaled up until they do).
  func orderRows() -> [Rapport_Order_V1_ImportOrdersRequest] {
    var scale = 2.0
    var rows = orderRows(rateScale: scale)
    for _ in 0..<12 where rows.count < orders {
      scale *= 1.6
      rows = orderRows(rateScale: scale)
    }
    return rows
  }

  private func orderRows(rateScale: Double) -> [Rapport_Order_V1_ImportOrdersRequest] {
    var random = SeededRandom(seed: seed)
    let span = 730.0
    let perCustomer = Double(orders) / Double(max(customers, 1))
    var rows: [Rapport_Order_V1_ImportOrdersRequest] = []
    rows.reserveCapacity(orders)
    // Zipf-like popularity over 200 products: weight 1/rank.
    let weights = (1...200).map { 1.0 / Double($0) }
    let total = weights.reduce(0, +)
    func product() -> Int {
      var x = random.uniform() * total
      for (index, weight) in weights.enumerated() {
        x -= weight
        if x <= 0 { return index + 1 }
      }
      return 200
    }
    for n in 0..<customers where rows.count < orders {
      let first = random.uniform() * span
      // Repeat-purchase rate per day with mean (perCustomer − 1) over the customer's remaining time,
      // scaled up against dropout.
      let mean = max(0.01, rateScale * (perCustomer - 1) / max(span - first, 1))
      let rate = random.gamma(shape: 0.8, scale: mean / 0.8)
      let dropout = random.beta(1, 6)
      var t = first
      var k = 0
      let channel = Self.channels[Int(random.uniform() * Double(Self.channels.count))]
      while rows.count < orders {
        let placed = now.addingTimeInterval(-(span - t) * 86_400)
        let status: Rapport_Order_V1_OrderStatus = {
          let u = random.uniform()
          return u < 0.03 ? .cancelled : u < 0.05 ? .refunded : placed > now.addingTimeInterval(-7 * 86_400) ? .paid : .delivered
        }()
        rows.append(.with {
          $0.rowNumber = Int64(rows.count + 1)
          $0.placedTime = .init(date: placed)
          $0.status = status
          $0.order.channel = channel
          $0.order.channelOrderReference = "S\(seed)-\(n)-\(k)"
          $0.order.currency = "EUR"
          $0.order.customerIdentities = [.with {
            $0.kind = .email
            $0.value = Self.email(n)
          }]
          $0.order.lines = (0..<(1 + Int(random.uniform() * 3))).map { _ in
            let sku = product()
            return .with {
              $0.sku = "SKU-\(sku)"
              $0.title = "Product \(sku)"
              $0.quantity = 1 + Int64(random.uniform() * 2)
              $0.unitPriceMinor = 500 + Int64(sku * 37 % 9_500)
            }
          }
        })
        k += 1
        t += random.exponential(rate: rate)
        if t >= span || (k > 1 && random.uniform() < dropout) { break }
      }
    }
    return rows
  }

  /// Imports the customers, then the orders on `streams` parallel streams (each customer's orders on one;
  /// a stream refused as UNAVAILABLE is sent again, up to five times: `retryingUnavailable`).
  func load(
    into customerAPI: Rapport_Customer_V1_CustomerService.Client<HTTP2ClientTransport.Posix>,
    _ orderAPI: Rapport_Order_V1_OrderService.Client<HTTP2ClientTransport.Posix>, streams: Int,
    progress: @escaping @Sendable (String) -> Void
  ) async throws -> Loaded {
    var loaded = Loaded()
    let started = ContinuousClock.now
    loaded.customers = try await customerAPI.importCustomers { writer in
      for n in 0..<customers {
        try await writer.write(.with {
          $0.rowNumber = Int64(n + 1)
          $0.email = Self.email(n)
          $0.givenName = "Seed"
          $0.familyName = "Customer \(n)"
          $0.channel = Self.channels[n % Self.channels.count]
        })
      }
    }
    loaded.customerSeconds = Self.seconds(since: started)
    let rows = orderRows()
    progress("generated \(rows.count) orders; importing")
    let lanes = max(1, streams)
    let ordersStarted = ContinuousClock.now
    let responses = try await withThrowingTaskGroup(of: Rapport_Order_V1_ImportOrdersResponse.self) { group in
      for lane in 0..<lanes {
        group.addTask {
          // A lane refused as UNAVAILABLE (the customer service too slow to resolve a batch's customers,
          // say) is sent again whole: its rows stored already count as existing the second time.
          try await retryingUnavailable(retrying: { error, attempt in
            progress("orders stream \(lane + 1) of \(lanes): \(error.message); sending it again (attempt \(attempt))\n")
          }) {
            try await orderAPI.importOrders { writer in
              for row in rows where Self.lane(of: row, lanes) == lane { try await writer.write(row) }
            }
          }
        }
      }
      return try await group.reduce(into: []) { $0.append($1) }
    }
    for response in responses {
      loaded.orders.rows += response.rows
      loaded.orders.created += response.created
      loaded.orders.existing += response.existing
      loaded.orders.failed += response.failed
      loaded.orders.errors += response.errors
    }
    loaded.orderSeconds = Self.seconds(since: ordersStarted)
    return loaded
  }

  /// The stream a row goes on: by customer, so one customer's orders arrive in order.
  static func lane(of row: Rapport_Order_V1_ImportOrdersRequest, _ lanes: Int) -> Int {
    let hash = row.order.customerIdentities.first?.value.hashValueStable ?? 0
    return (hash % lanes + lanes) % lanes
  }

  static func seconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
  }
}

extension String {
  /// A hash that is the same in every process (Swift's `hashValue` is seeded per process).
  var hashValueStable: Int { utf8.reduce(5381) { ($0 &* 33) &+ Int($1) } }
}
