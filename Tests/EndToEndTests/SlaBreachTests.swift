import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import RapportCore
import RapportLocal
import RapportProtos
import RapportTesting
import Testing

extension Executables {
  /// The real customer and support executables, the support service reading "now" from a file the test
  /// rewrites (`clock-file`): a first-response target opened on a Friday afternoon breaches on Monday at
  /// its business-hours due time, and `SlaBreached` reaches the support event feed then — not before.
  @Suite struct SlaBreachEndToEndTests {
    @Test func aBreachReachesTheSupportFeedAtItsBusinessHoursDueTime() async throws {
      let database = try await TestDatabase.create()
      let directory = NSTemporaryDirectory() + "rapport-sla-\(UUID().uuidString)"
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
      let clockFile = directory + "/now"
      func setClock(_ instant: String) throws { try instant.write(toFile: clockFile, atomically: true, encoding: .utf8) }
      try setClock("2026-03-06T15:00:00Z")  // Friday 16:00 in Berlin
      let (customers, customerAt) = try await Stack.launch(
        "customer", port: 0, database: database, upstream: [], dataDirectory: directory)
      var support: ChildProcess?
      do {
        let (process, supportAt) = try await Stack.launch(
          "support", port: 0, database: database, upstream: [("customer", customerAt)], dataDirectory: directory,
          settings: ["clock-file": clockFile, "scan-interval-ms": "100"])
        support = process
        let customer = try await withPlaintextClient(customerAt) { client in
          try await Rapport_Customer_V1_CustomerService.Client(wrapping: client)
            .createCustomer(.with { $0.email = "sla@example.com" }).customer.id
        }
        try await withPlaintextClient(supportAt) { client in
          let api = Rapport_Support_V1_SupportService.Client(wrapping: client)
          _ = try await api.putBusinessCalendar(.with {
            $0.calendar = .with {
              $0.name = "berlin"
              $0.timeZone = "Europe/Berlin"
              $0.hours = (1...5).map { day in .with { $0.weekday = Int32(day); $0.start = "09:00"; $0.end = "17:00" } }
            }
          })
          _ = try await api.putSlaPolicy(.with {
            $0.policy = .with {
              $0.name = "standard"
              $0.calendar = "berlin"
              $0.firstResponseMinutes = 120
            }
          })
          let opened = try await api.openTicket(.with {
            $0.customerID = customer
            $0.subject = "Where is my parcel?"
            $0.body = "It has not arrived."
            $0.channel = .email
          }).ticket
          let due = try #require(opened.slaTargets.first).dueTime
          #expect(due == .init(date: try Date("2026-03-09T09:00:00Z", strategy: .iso8601)))  // Monday 10:00

          // Monday 09:59 in Berlin: several scans later, nothing has breached.
          try setClock("2026-03-09T08:59:00Z")
          try await Task.sleep(for: .milliseconds(800))
          let early = try await TestDatabase.scalar(
            "SELECT count(*)::bigint FROM support.outbox WHERE type = 'SlaBreached'", on: database)
          #expect(early == 0)

          try setClock("2026-03-09T09:00:01Z")
          let breach = try await Rapport_Events_V1_EventFeed.Client(wrapping: client).subscribe(
            .with { $0.types = ["SlaBreached"] }
          ) { response in
            for try await event in response.messages { return event }
            throw TestFailure("the support feed ended without an SlaBreached")
          }
          guard case .slaBreached(let payload)? = breach.payload else { throw TestFailure("not an SlaBreached") }
          #expect(payload.ticketID == opened.id)
          #expect(payload.dueAt == due && breach.occurredAt == due)
          let read = try await api.getTicket(.with { $0.ticketID = opened.id }).ticket
          #expect(read.slaTargets.first?.state == .breached)
        }
      } catch {
        await support?.stop()
        await customers.stop()
        throw error
      }
      await support?.stop()
      await customers.stop()
    }
  }
}
