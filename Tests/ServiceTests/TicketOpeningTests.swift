import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import Testing

@testable import SupportService

@Suite(.hangLimit) struct TicketOpeningTests {
  @Test func unknownErasedOrForeignReferencesAreRefusedAndStoreNothing() async throws {
    try await withSupport(orders: true) { env in
      let orders = try #require(env.orders)
      let alice = try await env.customer("alice")
      let bob = try await env.customer("bob")
      let bobsOrder = try await orders.placeOrder(order("bob-1", customer: bob)).order
      await expectStatus(.notFound, mentioning: "customer") {
        try await env.support.openTicket(ticket(UUID().uuidString))
      }
      await expectStatus(.notFound, mentioning: "order") {
        try await env.support.openTicket(ticket(alice).changed { $0.orderID = UUID().uuidString })
      }
      await expectStatus(.invalidArgument, field: "order_id") {
        try await env.support.openTicket(ticket(alice).changed { $0.orderID = bobsOrder.id })
      }
      await expectStatus(.invalidArgument, field: "order_id") {
        try await env.support.openTicket(ticket(alice).changed { $0.orderID = "order-7" })
      }
      await expectStatus(.invalidArgument, field: "tags") {
        try await env.support.openTicket(ticket(alice).changed { $0.tags = ["needs review"] })
      }
      await expectStatus(.invalidArgument, field: "tags") {
        try await env.support.openTicket(ticket(alice).changed { $0.tags = (0...20).map { "t\($0)" } })
      }
      let erased = try await env.customer("erased")
      _ = try await env.customers.eraseCustomer(.with { $0.customerID = erased })
      await expectStatus(.failedPrecondition) { try await env.support.openTicket(ticket(erased)) }
      #expect(try await count("support.tickets", env.database) == 0)
      #expect(try await count("support.outbox", env.database) == 0)

      // Bob's ticket about his order, tagged; tags are normalised and replaceable.
      let opened = try await env.support.openTicket(ticket(bob).changed {
        $0.orderID = bobsOrder.id
        $0.tags = ["Damaged", "returns", "damaged"]
      }).ticket
      #expect(opened.orderID == bobsOrder.id)
      #expect(opened.tags == ["damaged", "returns"])
      let retagged = try await env.support.setTicketTags(.with {
        $0.ticketID = opened.id
        $0.tags = ["refund:approved"]
      }).ticket
      #expect(retagged.tags == ["refund:approved"])
      let tagged = try await env.support.listTickets(.with { $0.tag = "REFUND:approved" }).tickets
      #expect(tagged.map(\.id) == [opened.id])
      #expect(try await env.support.listTickets(.with { $0.tag = "damaged" }).tickets.isEmpty)
    }
  }

  @Test func aChannelMessageOpensOneTicketHoweverOftenItIsDelivered() async throws {
    try await withSupportService { support, database, env in
      let customer = try await env.customer()
      let mail = ticket(customer).changed { $0.channelMessageID = "<CAF1234@mail.example.com>" }
      let first = try await support.openTicket(mail)
      let again = try await support.openTicket(mail)
      #expect(!first.replayed && again.replayed)
      #expect(again.ticket == first.ticket)
      // The same message id on another channel is another message.
      let chat = try await support.openTicket(mail.changed { $0.channel = .chat })
      #expect(!chat.replayed)
      await expectStatus(.failedPrecondition) {
        try await support.openTicket(mail.changed { $0.subject = "Something else" })
      }
      #expect(try await count("support.tickets", database) == 2)
      #expect(try await env.events("TicketOpened").count == 2)
    }
  }

  @Test func roundRobinTeamsHandTicketsToTheirAgentsInTurn() async throws {
    try await withSupportService { support, database, env in
      _ = try await support.putTeam(.with {
        $0.team = .with {
          $0.name = "returns"
          $0.agents = ["ann", "ben", "cho"]
          $0.roundRobin = true
        }
      })
      _ = try await support.putTeam(.with { $0.team = .with { $0.name = "vip"; $0.agents = ["dee"] } })
      let customer = try await env.customer()
      var assignees: [String] = []
      for _ in 0..<4 {
        assignees.append(try await support.openTicket(ticket(customer).changed { $0.team = "returns" }).ticket.assignee)
      }
      #expect(assignees == ["ann", "ben", "cho", "ann"])
      // A team without round robin gets the ticket and no agent.
      let vip = try await support.openTicket(ticket(customer).changed { $0.team = "vip" }).ticket
      #expect(vip.team == "vip" && vip.assignee.isEmpty)
      // Assigning to the team alone picks the next agent; naming one keeps that one.
      let moved = try await support.assignTicket(.with {
        $0.ticketID = vip.id
        $0.team = "returns"
      }).ticket
      #expect(moved.assignee == "ben")
      let chosen = try await support.assignTicket(.with {
        $0.ticketID = vip.id
        $0.team = "returns"
        $0.assignee = "cho"
      }).ticket
      #expect(chosen.assignee == "cho")
      // Concurrent openings each take their own turn.
      try await withThrowingTaskGroup(of: Void.self) { group in
        for _ in 0..<6 {
          group.addTask { _ = try await support.openTicket(ticket(customer).changed { $0.team = "returns" }) }
        }
        try await group.waitForAll()
      }
      let counts = try await TestDatabase.column(
        "SELECT assignee || '=' || count(*) FROM support.tickets WHERE team = 'returns' GROUP BY assignee ORDER BY 1",
        on: database)
      #expect(counts == ["ann=4", "ben=3", "cho=4"])
      let listed = try await support.listSlaPolicies(.init()).teams
      #expect(listed.map(\.name) == ["returns", "vip"])
      #expect(try await env.events("TicketAssigned").count == 4 + 1 + 2 + 6)
    }
  }

  @Test func solvedTicketsCloseAutomaticallyAfterTheConfiguredDays() async throws {
    let clock = ManualClock(local("2026-03-09 09:00", "Europe/Berlin"))
    try await withSupport(clock: clock, closeSolvedAfter: .seconds(3 * 86_400)) { env in
      let customer = try await env.customer()
      let early = try await env.support.openTicket(ticket(customer)).ticket
      let late = try await env.support.openTicket(ticket(customer)).ticket
      let open = try await env.support.openTicket(ticket(customer)).ticket
      _ = try await env.support.changeTicketStatus(status(early.id, .solved))
      clock.advance(by: 86_400)
      _ = try await env.support.changeTicketStatus(status(late.id, .solved))
      clock.advance(by: 2 * 86_400 + 1)  // early: solved 3 days + 1 s ago; late: 2 days ago
      try await eventually("the scanner closed the early ticket") {
        try await env.support.getTicket(.with { $0.ticketID = early.id }).ticket.status == .closed
      }
      #expect(try await env.support.getTicket(.with { $0.ticketID = late.id }).ticket.status == .solved)
      #expect(try await env.support.getTicket(.with { $0.ticketID = open.id }).ticket.status == .new)
      let closed = try await env.events("TicketStatusChanged").filter {
        if case .ticketStatusChanged(let change)? = $0.payload { return change.to == .closed }
        return false
      }
      #expect(closed.map(\.aggregateID) == [early.id])
      // A closed ticket is final: a customer reply is refused, the rating still allowed.
      await expectStatus(.failedPrecondition) { try await env.support.addMessage(reply(early.id, .customer, "Hello?")) }
      _ = try await env.support.rateTicket(.with { $0.ticketID = early.id; $0.rating = 4 })
    }
  }
}
