import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import SwiftProtobuf
import Testing

@testable import SupportService

func reply(
  _ ticket: String, _ kind: Rapport_Support_V1_AuthorKind, _ body: String = "Thanks, looking into it.",
  internal isInternal: Bool = false, requestID: String = ""
) -> Rapport_Support_V1_AddMessageRequest {
  .with {
    $0.ticketID = ticket
    $0.authorKind = kind
    $0.author = kind == .agent ? "agent:kim" : "customer"
    $0.body = body
    $0.internal = isInternal
    $0.requestID = requestID
  }
}

func status(_ ticket: String, _ status: Rapport_Support_V1_TicketStatus) -> Rapport_Support_V1_ChangeTicketStatusRequest {
  .with {
    $0.ticketID = ticket
    $0.status = status
    $0.actor = "agent:kim"
  }
}

@Suite(.hangLimit) struct TicketThreadTests {
  @Test func theFirstPublicAgentReplyIsTheFirstResponseAndACustomerReplyReopensASolvedTicket() async throws {
    try await withSupportService { support, database, env in
      let opened = try await support.openTicket(ticket(try await env.customer())).ticket
      let note = try await support.addMessage(reply(opened.id, .agent, "Check the carrier first", internal: true))
      #expect(note.ticket.status == .new && !note.ticket.hasFirstResponseTime)
      let answered = try await support.addMessage(reply(opened.id, .agent, requestID: "r-1"))
      #expect(answered.ticket.status == .open && answered.ticket.hasFirstResponseTime)
      let retry = try await support.addMessage(reply(opened.id, .agent, requestID: "r-1"))
      #expect(retry.replayed && retry.message.id == answered.message.id)
      let second = try await support.addMessage(reply(opened.id, .agent, "Any news?"))
      #expect(second.ticket.firstResponseTime == answered.ticket.firstResponseTime)
      _ = try await support.changeTicketStatus(status(opened.id, .solved))
      let reopened = try await support.addMessage(reply(opened.id, .customer, "It still has not arrived."))
      #expect(reopened.ticket.status == .open && reopened.ticket.hasSolveTime)
      let thread = try await support.getTicket(.with { $0.ticketID = opened.id }).ticket.messages
      #expect(thread.map(\.internal) == [true, false, false, false])
      #expect(thread.map(\.authorKind) == [.agent, .agent, .agent, .customer])
      let added = try await outboxEvents("support", type: "TicketMessageAdded", database)
      #expect(added.map(\.ticketMessageAdded.firstResponse) == [false, true, false, false])
      let changes = try await outboxEvents("support", type: "TicketStatusChanged", database).map(\.ticketStatusChanged)
      #expect(changes.map { [$0.from, $0.to] } == [[.new, .open], [.open, .solved], [.solved, .open]])
    }
  }

  @Test func illegalStatusChangesNameTheCurrentStatusAndChangeNothing() async throws {
    try await withSupportService { support, database, env in
      let opened = try await support.openTicket(ticket(try await env.customer())).ticket
      await expectStatus(.failedPrecondition, mentioning: "NEW") {
        try await support.changeTicketStatus(status(opened.id, .closed))
      }
      await expectStatus(.invalidArgument, field: "status") { try await support.changeTicketStatus(status(opened.id, .new)) }
      _ = try await support.changeTicketStatus(status(opened.id, .pending))
      let customerAnswered = try await support.addMessage(reply(opened.id, .customer, "Here is the photo."))
      #expect(customerAnswered.ticket.status == .open)
      _ = try await support.changeTicketStatus(status(opened.id, .solved))
      _ = try await support.changeTicketStatus(status(opened.id, .closed))
      await expectStatus(.failedPrecondition, mentioning: "CLOSED") {
        try await support.changeTicketStatus(status(opened.id, .open))
      }
      await expectStatus(.failedPrecondition, mentioning: "CLOSED") {
        try await support.addMessage(reply(opened.id, .customer, "Hello?"))
      }
      let messages = try await count("support.ticket_messages", database)
      #expect(messages == 1)
      await expectStatus(.notFound) { try await support.changeTicketStatus(status(UUID().uuidString, .open)) }
    }
  }

  @Test func aSolvedTicketIsRatedOnceFromOneToFive() async throws {
    try await withSupportService { support, database, env in
      let opened = try await support.openTicket(ticket(try await env.customer())).ticket
      let rate = Rapport_Support_V1_RateTicketRequest.with {
        $0.ticketID = opened.id
        $0.rating = 4
        $0.comment = "Quick and friendly"
      }
      await expectStatus(.failedPrecondition, mentioning: "NEW") { try await support.rateTicket(rate) }
      _ = try await support.changeTicketStatus(status(opened.id, .solved))
      await expectStatus(.invalidArgument, field: "rating") {
        try await support.rateTicket(rate.changed { $0.rating = 6 })
      }
      let rated = try await support.rateTicket(rate).ticket
      #expect(rated.csatRating == 4 && rated.csatComment == "Quick and friendly")
      await expectStatus(.failedPrecondition, mentioning: "already rated") { try await support.rateTicket(rate) }
      let events = try await outboxEvents("support", type: "TicketRated", database)
      #expect(events.map(\.ticketRated.rating) == [4])
    }
  }

  @Test func badMessagesNameTheFieldAndStoreNothing() async throws {
    try await withSupportService { support, database, env in
      let opened = try await support.openTicket(ticket(try await env.customer())).ticket
      let file = Rapport_Support_V1_Attachment.with {
        $0.name = "photo.jpg"
        $0.contentType = "image/jpeg"
        $0.sizeBytes = 1000
        $0.location = "s3://bucket/photo.jpg"
      }
      await expectStatus(.invalidArgument, field: "body") { try await support.addMessage(reply(opened.id, .agent, " ")) }
      await expectStatus(.invalidArgument, field: "author_kind") {
        try await support.addMessage(reply(opened.id, .unspecified))
      }
      await expectStatus(.invalidArgument, field: "attachments") {
        try await support.addMessage(reply(opened.id, .customer).changed { $0.attachments = Array(repeating: file, count: 11) })
      }
      await expectStatus(.invalidArgument, field: "attachments[0].size_bytes") {
        try await support.addMessage(reply(opened.id, .customer).changed {
          $0.attachments = [file.changed { $0.sizeBytes = 26 * 1024 * 1024 }]
        })
      }
      await expectStatus(.invalidArgument, field: "attachments[0].location") {
        try await support.addMessage(reply(opened.id, .customer).changed { $0.attachments = [file.changed { $0.location = "" }] })
      }
      let stored = try await count("support.ticket_messages", database)
      #expect(stored == 0)
      let withFile = try await support.addMessage(reply(opened.id, .customer).changed { $0.attachments = [file] })
      #expect(withFile.message.attachments == [file])
      #expect(try await support.getTicket(.with { $0.ticketID = opened.id }).ticket.messages.first?.attachments == [file])
    }
  }
}

@Suite(.hangLimit) struct TicketErasureTests {
  @Test func erasingTheCustomerRedactsTheThreadAndKeepsTheTimings() async throws {
    try await withSupportService { support, _, env in
      let customer = try await env.customer()
      let opened = try await support.openTicket(ticket(customer)).ticket
      _ = try await support.addMessage(reply(opened.id, .customer, "My address is Hauptstraße 1").changed {
        $0.attachments = [.with {
          $0.name = "id-card.jpg"
          $0.location = "s3://b/id-card.jpg"
        }]
      })
      let answered = try await support.addMessage(reply(opened.id, .agent)).ticket
      // The erasure travels from the customer service over its event feed.
      _ = try await env.customers.eraseCustomer(.with {
        $0.customerID = customer
        $0.reason = "GDPR-1"
      })
      try await eventually("the support service applied CustomerErased") {
        try await support.getTicket(.with { $0.ticketID = opened.id }).ticket.subject == SupportStore.redacted
      }
      let after = try await support.getTicket(.with { $0.ticketID = opened.id }).ticket
      #expect(after.body.isEmpty)
      #expect(after.messages.map(\.body) == ["", ""])
      #expect(after.messages[0].attachments.isEmpty && after.messages[0].author.isEmpty)
      #expect(after.messages[1].author == "agent:kim")
      #expect(after.firstResponseTime == answered.firstResponseTime)
      await expectStatus(.failedPrecondition) { try await support.openTicket(ticket(customer)) }
    }
  }
}

@Suite(.hangLimit) struct TicketAssignmentAndSummaryTests {
  @Test func ticketsAreAssignedToATeamAndAnAgentUntilClosed() async throws {
    try await withSupportService { support, database, env in
      let opened = try await support.openTicket(ticket(try await env.customer())).ticket
      let assign = Rapport_Support_V1_AssignTicketRequest.with {
        $0.ticketID = opened.id
        $0.team = "returns"
        $0.assignee = "agent:kim"
      }
      let assigned = try await support.assignTicket(assign).ticket
      #expect(assigned.team == "returns" && assigned.assignee == "agent:kim")
      _ = try await support.assignTicket(assign)  // the same assignment: no new event
      let teamOnly = try await support.assignTicket(assign.changed { $0.assignee = "" }).ticket
      #expect(teamOnly.team == "returns" && teamOnly.assignee.isEmpty)
      let events = try await outboxEvents("support", type: "TicketAssigned", database).map(\.ticketAssigned)
      #expect(events.map(\.assignee) == ["agent:kim", ""])
      await expectStatus(.invalidArgument, field: "team") {
        try await support.assignTicket(.with { $0.ticketID = opened.id })
      }
      _ = try await support.changeTicketStatus(status(opened.id, .solved))
      _ = try await support.changeTicketStatus(status(opened.id, .closed))
      await expectStatus(.failedPrecondition, mentioning: "CLOSED") { try await support.assignTicket(assign) }
    }
  }

  @Test func theSummaryCountsOpenTicketsLastContactAndAverageCSAT() async throws {
    try await withSupportService { support, _, env in
      let customer = try await env.customer()
      let empty = try await support.getCustomerSupportSummary(.with { $0.customerID = customer }).summary
      #expect(empty.ticketCount == 0 && !empty.hasLastContactTime && empty.averageCsat == 0)
      let emptyOverview = try await support.getCustomerSupportOverview(.with { $0.customerID = customer })
      #expect(emptyOverview.summary == empty && emptyOverview.openTickets.isEmpty)
      let first = try await support.openTicket(ticket(customer)).ticket
      let second = try await support.openTicket(ticket(customer, subject: "Wrong size")).ticket
      _ = try await support.openTicket(ticket(customer, subject: "Invoice"))
      for (id, rating) in [(first.id, 5), (second.id, 2)] {
        _ = try await support.changeTicketStatus(status(id, .solved))
        _ = try await support.rateTicket(.with {
          $0.ticketID = id
          $0.rating = Int32(rating)
        })
      }
      let note = try await support.addMessage(reply(first.id, .customer, "Thanks again!")).message
      let summary = try await support.getCustomerSupportSummary(.with { $0.customerID = customer }).summary
      #expect(summary.ticketCount == 3)
      #expect(summary.openCount == 2)  // the customer's reply reopened the first ticket
      #expect(summary.averageCsat == 3.5 && summary.ratedCount == 2)
      #expect(summary.lastContactTime == note.createTime)
      // The overview is the same summary plus the open tickets, newest first, in one call.
      let overview = try await support.getCustomerSupportOverview(.with { $0.customerID = customer })
      #expect(overview.summary == summary)
      let open = try await support.listTickets(.with {
        $0.customerID = customer
        $0.onlyOpen = true
      }).tickets
      #expect(overview.openTickets.map(\.id) == open.map(\.id) && open.count == 2)
      #expect(overview.openTickets.allSatisfy { $0.status != .solved && $0.status != .closed })
      for ticket in overview.openTickets { _ = try await support.changeTicketStatus(status(ticket.id, .solved)) }
      let allSolved = try await support.getCustomerSupportOverview(.with { $0.customerID = customer })
      #expect(allSolved.summary.ticketCount == 3 && allSolved.summary.openCount == 0 && allSolved.openTickets.isEmpty)
      await expectStatus(.invalidArgument, field: "open_ticket_limit") {
        try await support.getCustomerSupportOverview(.with {
          $0.customerID = customer
          $0.openTicketLimit = -1
        })
      }
    }
  }

  @Test func statusPriorityAndAssignmentChangesAreKeptWithTheirActor() async throws {
    try await withSupportService { support, _, env in
      let customer = try await env.customer()
      let opened = try await support.openTicket(ticket(customer)).ticket
      #expect(opened.history.isEmpty)
      _ = try await support.assignTicket(.with {
        $0.ticketID = opened.id
        $0.team = "returns"
        $0.assignee = "agent:kim"
        $0.actor = "lead:ana"
      })
      _ = try await support.changeTicketPriority(.with {
        $0.ticketID = opened.id
        $0.priority = .urgent
        $0.actor = "agent:kim"
      })
      var solve = status(opened.id, .solved)
      solve.actor = "agent:kim"
      _ = try await support.changeTicketStatus(solve)
      _ = try await support.setTicketTags(.with {
        $0.ticketID = opened.id
        $0.tags = ["vip"]
      })  // tags are not history
      var replyMessage = reply(opened.id, .customer, "Still broken")
      replyMessage.author = "customer:1"
      let reopened = try await support.addMessage(replyMessage).ticket
      let history = try await support.getTicket(.with { $0.ticketID = opened.id }).ticket.history
      #expect(reopened.history == history)
      #expect(history.map(\.actor) == ["lead:ana", "agent:kim", "agent:kim", "customer:1"])
      #expect(history[0].assignmentChanged && history[0].team == "returns" && history[0].assignee == "agent:kim")
      #expect(history[0].fromStatus == .unspecified && history[0].toPriority == .unspecified)
      #expect(history[1].fromPriority == opened.priority && history[1].toPriority == .urgent && !history[1].assignmentChanged)
      #expect(history[2].toStatus == .solved)
      #expect(history[3].fromStatus == .solved && history[3].toStatus == reopened.status)
      #expect(zip(history, history.dropFirst()).allSatisfy { $0.changeTime.date <= $1.changeTime.date })
    }
  }
}

@Suite(.hangLimit) struct TicketListingTests {
  @Test func ticketsAreListedByStatusPriorityTeamAssigneeAndTimeWithStablePages() async throws {
    try await withSupportService { support, _, env in
      let alice = try await env.customer()
      let bob = try await env.customer()
      let before = Google_Protobuf_Timestamp(date: Date().addingTimeInterval(-1))
      var opened: [Rapport_Support_V1_Ticket] = []
      for (index, customer) in [alice, alice, bob, alice].enumerated() {
        opened.append(try await support.openTicket(ticket(customer, subject: "T\(index)").changed {
          $0.priority = index == 1 ? .urgent : .normal
        }).ticket)
      }
      _ = try await support.assignTicket(.with {
        $0.ticketID = opened[0].id
        $0.team = "returns"
        $0.assignee = "agent:kim"
      })
      _ = try await support.assignTicket(.with {
        $0.ticketID = opened[2].id
        $0.team = "returns"
      })
      _ = try await support.changeTicketStatus(status(opened[3].id, .pending))
      func ids(_ request: Rapport_Support_V1_ListTicketsRequest) async throws -> [String] {
        var all: [String] = []
        var request = request
        request.pageSize = 1
        repeat {
          let page = try await support.listTickets(request)
          all += page.tickets.map(\.id)
          request.pageToken = page.nextPageToken
        } while !request.pageToken.isEmpty
        return all
      }
      let newestFirst = opened.map(\.id).reversed()
      #expect(try await ids(.init()).filter { newestFirst.contains($0) } == Array(newestFirst))
      #expect(try await ids(.with { $0.customerID = alice }) == [opened[3].id, opened[1].id, opened[0].id])
      #expect(try await ids(.with { $0.statuses = [.pending] }) == [opened[3].id])
      #expect(try await ids(.with { $0.priority = .urgent }) == [opened[1].id])
      #expect(try await ids(.with { $0.team = "returns" }) == [opened[2].id, opened[0].id])
      #expect(try await ids(.with { $0.assignee = "agent:kim" }) == [opened[0].id])
      #expect(try await ids(.with { $0.createdAfter = before; $0.customerID = bob }) == [opened[2].id])
      #expect(try await ids(.with { $0.createdBefore = before; $0.customerID = alice }).isEmpty)
      await expectStatus(.invalidArgument, field: "statuses[0]") {
        try await support.listTickets(.with { $0.statuses = [.unspecified] })
      }
    }
  }
}
