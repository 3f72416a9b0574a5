import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import Synchronization
import Testing

typealias OrderAPI = Rapport_Order_V1_OrderService.Client<HTTP2ClientTransport.Posix>

extension Executables {
  /// The order executable is SIGKILLed while 8 clients place orders. An order and its OrderPlaced event
  /// are written by one statement, so whatever the kill interrupts, the database holds exactly one event
  /// per order, every acknowledged order is there, and retrying every attempted key afterwards (the shops'
  /// reaction to errors) ends with one order per key.
  @Suite struct OrderCrashTests {
    @Test func killingTheOrderServiceMidLoadLosesNothingAcknowledgedAndNeverSplitsAnOrderFromItsEvent() async throws {
      let database = try await TestDatabase.create()
      let directory = NSTemporaryDirectory() + "rapport-crash-\(UUID().uuidString)"
      let (customers, customerAt) = try await Stack.launch(
        "customer", port: 0, database: database, upstream: [], dataDirectory: directory)
      let (order, orderAt) = try await Stack.launch(
        "order", port: 0, database: database, upstream: [("customer", customerAt)], dataDirectory: directory)
      let port = orderAt.port
      // Once the kill has freed the port, it is reserved until the new process listens on it.
      let reservation = PortReservation(port)
      defer { reservation.release() }
      var restarted: ChildProcess?
      do {
        let customer = try await withPlaintextClient(customerAt) { client in
          try await Rapport_Customer_V1_CustomerService.Client(wrapping: client)
            .createCustomer(.with { $0.email = "crash@example.com" }).customer.id
        }
        let outcomes = try await withPlaintextClient(orderAt) { client in
          try await load(OrderAPI(wrapping: client), customer: customer, killing: order, reserving: reservation)
        }
        let acknowledged = outcomes.flatMap(\.acknowledged)
        let attempted = outcomes.flatMap(\.attempted)
        #expect(acknowledged.count >= 50, "the load placed only \(acknowledged.count) orders before the kill")
        #expect(attempted.count > acknowledged.count, "no request was interrupted by the kill")

        // One statement, so one snapshot: a PlaceOrder the kill interrupted may still commit (its backend
        // finishes the statement), and three counts one after the other could straddle it.
        let counts = try await TestDatabase.column(
          """
          SELECT n FROM unnest(ARRAY[
            (SELECT count(*) FROM orders.orders), (SELECT count(*) FROM orders.outbox WHERE type = 'OrderPlaced'),
            (SELECT count(*) FROM orders.order_lines)]) WITH ORDINALITY AS c(n, i) ORDER BY i
          """, as: Int.self, on: database)
        try #require(counts.count == 3)
        let (orders, events, lines) = (counts[0], counts[1], counts[2])
        print("crash test: \(acknowledged.count) acknowledged, \(attempted.count) attempted, \(orders) orders and \(events) OrderPlaced stored at the kill")
        #expect(orders == events)
        #expect(lines == 2 * orders)
        #expect(orders >= acknowledged.count)
        let stored = Set(try await TestDatabase.column("SELECT id::text FROM orders.orders", on: database))
        #expect(acknowledged.allSatisfy { stored.contains($0.id) })

        // The service comes back on the same address; shops retry what failed.
        let (again, _) = try await Stack.launch(
          "order", port: port, database: database, upstream: [("customer", customerAt)], dataDirectory: directory)
        restarted = again
        #expect(reservation.isHeld, "the killed service's port was not reserved")
        reservation.release()
        let ids = Dictionary(acknowledged.map { ($0.key, $0.id) }, uniquingKeysWith: { a, _ in a })
        try await withPlaintextClient(orderAt) { client in
          let api = OrderAPI(wrapping: client)
          for key in attempted {
            let response = try await api.placeOrder(crashOrder(key, customer: customer))
            if let id = ids[key] { #expect(response.replayed && response.order.id == id) }
          }
        }
        let finalOrders = try await TestDatabase.scalar("SELECT count(*)::bigint FROM orders.orders", on: database)
        let finalEvents = try await TestDatabase.scalar(
          "SELECT count(*)::bigint FROM orders.outbox WHERE type = 'OrderPlaced'", on: database)
        #expect(finalOrders == attempted.count)
        #expect(finalEvents == attempted.count)
      } catch {
        print("--- order log:\n\(order.logTail(lines: 40))")
        await restarted?.stop()
        await customers.stop()
        throw error
      }
      await restarted?.stop()
      await customers.stop()
      try? FileManager.default.removeItem(atPath: directory)
    }

    /// Eight workers place orders with fresh keys; the order process is killed once 50 orders were
    /// acknowledged (mid-load however fast the machine is); each worker stops at its first failure after
    /// the kill. Returns what each acknowledged and attempted.
    private func load(
      _ api: OrderAPI, customer: String, killing process: ChildProcess, reserving reservation: PortReservation
    ) async throws -> [Outcome] {
      let placed = Counter()
      return try await withThrowingTaskGroup(of: Outcome.self) { group in
        for worker in 0..<8 {
          group.addTask {
            var outcome = Outcome()
            for n in 0..<100_000 {
              let key = "crash-\(worker)-\(n)"
              outcome.attempted.append(key)
              var options = CallOptions.defaults
              options.timeout = .seconds(5)
              do {
                let response = try await api.placeOrder(crashOrder(key, customer: customer), options: options)
                outcome.acknowledged.append((key, response.order.id))
                placed.increment()
              } catch {
                if !process.isRunning { break }
              }
            }
            return outcome
          }
        }
        group.addTask {
          let giveUp = ContinuousClock.now + .seconds(60)
          while placed.value < 50 && ContinuousClock.now < giveUp { try await Task.sleep(for: .milliseconds(5)) }
          process.signal(SIGKILL)
          // Another test's outgoing connection could otherwise take the port before the restart.
          let giveUpReserving = ContinuousClock.now + .seconds(10)
          while !reservation.take() && ContinuousClock.now < giveUpReserving { try await Task.sleep(for: .milliseconds(1)) }
          return Outcome()
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
    }

    /// A port held (`SilentListener(reserving:)`) from the moment its server's death frees it.
    final class PortReservation: Sendable {
      let port: Int
      private let listener = Mutex<SilentListener?>(nil)

      init(_ port: Int) { self.port = port }

      var isHeld: Bool { listener.withLock { $0 != nil } }

      /// Binds the port if it is free (true once held).
      func take() -> Bool {
        listener.withLock { held in
          if held == nil { held = try? SilentListener(listening: false, reserving: port) }
          return held != nil
        }
      }

      func release() { listener.withLock { $0?.stop(); $0 = nil } }
    }

    private final class Counter: Sendable {
      private let count = Mutex(0)
      var value: Int { count.withLock { $0 } }
      func increment() { count.withLock { $0 += 1 } }
    }

    private struct Outcome: Sendable {
      var acknowledged: [(key: String, id: String)] = []
      var attempted: [String] = []
    }
  }
}

private func crashOrder(_ key: String, customer: String) -> Rapport_Order_V1_PlaceOrderRequest {
  .with {
    $0.idempotencyKey = key
    $0.customerID = customer
    $0.channel = .web
    $0.currency = "EUR"
    $0.lines = [
      .with { $0.sku = "TEA"; $0.quantity = 2; $0.unitPriceMinor = 1290 },
      .with { $0.sku = "MUG"; $0.quantity = 1; $0.unitPriceMinor = 1850 },
    ]
  }
}
