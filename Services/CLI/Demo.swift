import Foundation
import GRPCCore
import RapportCore
import RapportLocal
import RapportProtos

/// A small, realistic data set loaded through the public RPCs (so events flow as in production).
/// Loading it twice changes nothing: customers are found by email, orders and tickets carry fixed
/// idempotency keys.
enum Demo {
  static let customers: [(email: String, given: String, family: String, channel: Rapport_Common_V1_Channel)] = [
    ("ada.lovelace@example.com", "Ada", "Lovelace", .web),
    ("grace.hopper@example.com", "Grace", "Hopper", .mobile),
    ("alan.turing@example.com", "Alan", "Turing", .store),
    ("katherine.johnson@example.com", "Katherine", "Johnson", .marketplace),
    ("purchasing@acme.example", "Wile E.", "Coyote", .b2B),
  ]
  static let catalogue: [(sku: String, title: String, price: Int64)] = [
    ("TEA-EARL-250", "Earl Grey, 250 g", 1290), ("MUG-STONE", "Stoneware mug", 1850),
    ("KETTLE-GOOSE", "Gooseneck kettle", 6900), ("FILTER-100", "Paper filters x100", 490),
  ]

  /// Loads the data set; returns the customers' emails.
  static func load(_ stack: Stack) async throws -> [String] {
    try await stack.withClients { clients in
      let customers = clients.customers
      let orders = clients.orders
      let support = clients.support
      // Business hours, a standard SLA and a round-robin team, so demo tickets show targets and agents.
      _ = try await support.putBusinessCalendar(.with {
        $0.calendar = .with {
          $0.name = "office"
          $0.timeZone = "Europe/Berlin"
          $0.hours = (1...5).map { day in .with { $0.weekday = Int32(day); $0.start = "09:00"; $0.end = "17:00" } }
        }
      })
      _ = try await support.putSlaPolicy(.with {
        $0.policy = .with {
          $0.name = "standard"
          $0.calendar = "office"
          $0.firstResponseMinutes = 240
          $0.nextResponseMinutes = 240
          $0.resolutionMinutes = 2400
        }
      })
      _ = try await support.putTeam(.with {
        $0.team = .with {
          $0.name = "care"
          $0.agents = ["mia@shop.example", "noah@shop.example"]
          $0.roundRobin = true
        }
      })
      for (index, person) in Self.customers.enumerated() {
        let id: String
        do {
          id = try await customers.findCustomer(.with { $0.email = person.email }).customer.id
        } catch let error as RPCError where error.code == .notFound {
          id = try await customers.createCustomer(.with {
            $0.email = person.email
            $0.givenName = person.given
            $0.familyName = person.family
            $0.channel = person.channel
          }).customer.id
        }
        for number in 0...(index % 3) {
          _ = try await orders.placeOrder(.with {
            $0.idempotencyKey = "demo-\(index)-\(number)"
            $0.customerID = id
            $0.channel = person.channel == .b2B ? .b2B : .web
            $0.currency = index == 2 ? "GBP" : "EUR"
            $0.lines = (0...number).map { line in
              let item = catalogue[(index + line) % catalogue.count]
              return .with {
                $0.sku = item.sku
                $0.title = item.title
                $0.quantity = Int64(1 + line)
                $0.unitPriceMinor = item.price
              }
            }
          })
        }
        if index % 2 == 0 {
          _ = try await support.openTicket(.with {
            $0.requestID = "demo-ticket-\(index)-v2"
            $0.customerID = id
            $0.subject = "Where is my parcel?"
            $0.body = "Hello, my order has not arrived yet. Could you check the tracking, please?"
            $0.priority = index == 0 ? .high : .normal
            $0.channel = .email
            $0.team = "care"
            $0.tags = ["delivery"]
          })
        }
      }
      return Self.customers.map(\.email)
    }
  }
}
