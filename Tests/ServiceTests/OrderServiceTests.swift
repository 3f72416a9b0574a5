import CustomerService
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import OrderService
import RapportCore
import RapportProtos
import RapportTesting
import Testing

typealias OrderClient = Rapport_Order_V1_OrderService.Client<HTTP2ClientTransport.Posix>

/// What an order-service test works with: both clients, a customer, the database, the services' clock.
struct OrderEnv: Sendable {
  let orders: OrderClient
  let customers: CustomerClient
  let customerID: String
  let database: DatabaseURL
  let clock: ManualClock

  /// The service's order as GetOrder returns it.
  func get(_ id: String) async throws -> Rapport_Order_V1_Order {
    try await orders.getOrder(.with { $0.orderID = id }).order
  }

  /// Places a fresh order (key `key`) for the env's customer.
  func place(_ key: String, lines: Int = 2) async throws -> Rapport_Order_V1_Order {
    try await orders.placeOrder(order(key, customer: customerID, lines: lines)).order
  }

  /// Events of `type` in the order outbox, in sequence order.
  func events(_ type: String) async throws -> [Rapport_Events_V1_Event] {
    try await outboxEvents("orders", type: type, database)
  }
}

/// Runs customer and order services on one fresh database; the order service reads time from a
/// `ManualClock` the test moves (or, with `realTime`, the system clock) and scans carts and due dates
/// every 50 ms.
func withOrders(
  customerAddress: HostPort? = nil, abandonCartAfter: Duration = .seconds(3600), realTime: Bool = false,
  _ body: @Sendable (OrderEnv) async throws -> Void
) async throws {
  try await withCustomerService { customers, database, customerAt in
    let customer = try await customers.createCustomer(.with { $0.email = "buyer@example.com" }).customer
    let clock = ManualClock()
    let app = try OrderApp.build(
      config: testConfig("order", database), customerAddress: customerAddress ?? customerAt,
      customerTimeout: .seconds(10),
      timing: .init(
        abandonCartAfter: abandonCartAfter, scanInterval: .milliseconds(50), clock: realTime ? .system : clock.wallClock),
      logger: testLogger("order"))
    try await withRunningService(app) { address in
      try await withClient(to: address) { client in
        try await body(
          OrderEnv(
            orders: OrderClient(wrapping: client), customers: customers, customerID: customer.id, database: database,
            clock: clock))
      }
    }
  }
}

/// Runs customer and order services on one fresh database; hands `body` an order client and a customer id.
func withOrderService(
  customerAddress: HostPort? = nil,
  _ body: @Sendable (OrderClient, String, DatabaseURL) async throws -> Void
) async throws {
  try await withOrders(customerAddress: customerAddress, realTime: true) { env in try await body(env.orders, env.customerID, env.database) }
}

func order(_ key: String, customer: String, lines: Int = 2) -> Rapport_Order_V1_PlaceOrderRequest {
  .with {
    $0.idempotencyKey = key
    $0.customerID = customer
    $0.channel = .web
    $0.currency = "EUR"
    $0.lines = (1...lines).map { n in
      .with {
        $0.sku = "SKU-\(n)"
        $0.title = "Item \(n)"
        $0.quantity = Int64(n)
        $0.unitPriceMinor = 1250
      }
    }
  }
}

@Suite(.hangLimit) struct OrderServiceTests {
  @Test func placingAnOrderComputesTheTotalStoresItAndEmitsOrderPlaced() async throws {
    try await withOrderService { orders, customer, database in
      let placed = try await orders.placeOrder(order("k-1", customer: customer))
      #expect(!placed.replayed)
      #expect(placed.order.total.amountMinor == 1250 * 1 + 1250 * 2)
      #expect(placed.order.total.currency == "EUR")
      #expect(placed.order.status == .pending)
      #expect(placed.order.lines.map(\.sku) == ["SKU-1", "SKU-2"])
      let read = try await orders.getOrder(.with { $0.orderID = placed.order.id }).order
      #expect(read == placed.order)
      let observed1 = try await count("orders.outbox", database)
      #expect(observed1 == 1)
      #expect(
        try await TestDatabase.scalar("SELECT count(*)::bigint FROM orders.outbox WHERE type = 'OrderPlaced'", on: database) == 1)
    }
  }

  @Test func placingTheSameOrderTwiceReturnsTheFirst() async throws {
    try await withOrderService { orders, customer, database in
      let first = try await orders.placeOrder(order("same-key", customer: customer))
      let second = try await orders.placeOrder(order("same-key", customer: customer))
      #expect(second.replayed)
      #expect(second.order == first.order)
      let observed2 = try await count("orders.orders", database)
      #expect(observed2 == 1)
      let observed3 = try await count("orders.outbox", database)
      #expect(observed3 == 1)
    }
  }

  @Test func concurrentRetriesCreateOneOrder() async throws {
    try await withOrderService { orders, customer, database in
      let ids = try await withThrowingTaskGroup(of: String.self) { group in
        for _ in 0..<10 { group.addTask { try await orders.placeOrder(order("burst", customer: customer)).order.id } }
        return try await group.reduce(into: Set<String>()) { $0.insert($1) }
      }
      #expect(ids.count == 1)
      let observed4 = try await count("orders.orders", database)
      #expect(observed4 == 1)
      let observed5 = try await count("orders.order_lines", database)
      #expect(observed5 == 2)
    }
  }

  @Test func reusingAKeyForADifferentOrderIsRefused() async throws {
    try await withOrderService { orders, customer, database in
      _ = try await orders.placeOrder(order("reused", customer: customer, lines: 1))
      await expectStatus(.failedPrecondition) { try await orders.placeOrder(order("reused", customer: customer, lines: 3)) }
      let observed6 = try await count("orders.orders", database)
      #expect(observed6 == 1)
      // The same key on another channel is another order.
      var mobile = order("reused", customer: customer, lines: 3)
      mobile.channel = .mobile
      let other = try await orders.placeOrder(mobile)
      #expect(!other.replayed)
    }
  }

  @Test func anUnknownCustomerIsNotFoundAndNothingIsStored() async throws {
    try await withOrderService { orders, _, database in
      await expectStatus(.notFound) { try await orders.placeOrder(order("k", customer: UUID().uuidString)) }
      let observed7 = try await count("orders.orders", database)
      #expect(observed7 == 0)
    }
  }

  @Test func withTheCustomerServiceDownTheOrderIsUnavailableAndNotStored() async throws {
    let refusing = try SilentListener(listening: false)
    defer { refusing.stop() }
    let closed = HostPort(host: "127.0.0.1", port: refusing.port)
    try await withOrderService(customerAddress: closed) { orders, customer, database in
      await expectStatus(.unavailable) { try await orders.placeOrder(order("k-down", customer: customer)) }
      let observed8 = try await count("orders.orders", database)
      #expect(observed8 == 0)
      let observed9 = try await count("orders.outbox", database)
      #expect(observed9 == 0)
    }
  }

  @Test(arguments: [
    BadOrder("idempotency_key") { r in r.idempotencyKey = "" },
    BadOrder("idempotency_key") { r in r.idempotencyKey = String(repeating: "k", count: 129) },
    BadOrder("customer_id") { r in r.customerID = "customer-7" },
    BadOrder("channel") { r in r.channel = .unspecified },
    BadOrder("currency") { r in r.currency = "EURO" },
    BadOrder("currency") { r in r.currency = "eur" },
    BadOrder("lines") { r in r.lines = [] },
    BadOrder("lines") { r in r.lines = Array(repeating: r.lines[0], count: 101) },
    BadOrder("lines[0].quantity") { r in r.lines[0].quantity = 0 },
    BadOrder("lines[1].quantity") { r in r.lines[1].quantity = -3 },
    BadOrder("lines[0].unit_price_minor") { r in r.lines[0].unitPriceMinor = -1 },
    BadOrder("lines[0].sku") { r in r.lines[0].sku = " " },
  ])
  func invalidOrdersNameTheFieldAndStoreNothing(_ bad: BadOrder) async throws {
    try await withOrderService { orders, customer, database in
      var request = order("bad", customer: customer)
      bad.mutate(&request)
      await expectStatus(.invalidArgument, field: bad.field) { try await orders.placeOrder(request) }
      let observed10 = try await count("orders.orders", database)
      #expect(observed10 == 0)
    }
  }

  @Test func listingPagesNewestFirstWithStableTokens() async throws {
    try await withOrderService { orders, customer, _ in
      var placed: [String] = []
      for index in 0..<5 { placed.append(try await orders.placeOrder(order("p\(index)", customer: customer)).order.id) }
      var seen: [String] = []
      var token = ""
      repeat {
        let page = try await orders.listOrders(.with {
          $0.customerID = customer
          $0.pageSize = 2
          $0.pageToken = token
        })
        #expect(page.orders.count <= 2)
        seen += page.orders.map(\.id)
        token = page.nextPageToken
        // An order placed while paging does not shift the pages still to come.
        if seen.count == 2 { _ = try await orders.placeOrder(order("late", customer: customer)) }
      } while !token.isEmpty
      #expect(seen == placed.reversed())
      await expectStatus(.invalidArgument, field: "page_token") {
        try await orders.listOrders(.with {
          $0.customerID = customer
          $0.pageToken = "garbage"
        })
      }
      await expectStatus(.invalidArgument, field: "page_size") {
        try await orders.listOrders(.with {
          $0.customerID = customer
          $0.pageSize = 1000
        })
      }
      await expectStatus(.notFound) { try await orders.getOrder(.with { $0.orderID = UUID().uuidString }) }
    }
  }
}

/// A valid order made invalid in one field.
struct BadOrder: Sendable, CustomTestStringConvertible {
  let field: String
  let mutate: @Sendable (inout Rapport_Order_V1_PlaceOrderRequest) -> Void
  init(_ field: String, _ mutate: @escaping @Sendable (inout Rapport_Order_V1_PlaceOrderRequest) -> Void) {
    self.field = field
    self.mutate = mutate
  }
  var testDescription: String { field }
}
