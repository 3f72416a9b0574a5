import Foundation
import GRPCCore
import RapportCore
import RapportProtos
import RapportTesting
import Testing

@testable import SupportService

/// Mon–Fri 09:00–17:00 in Berlin, with New Year's Day off.
let berlinOffice = Rapport_Support_V1_BusinessCalendar.with {
  $0.name = "berlin-office"
  $0.timeZone = "Europe/Berlin"
  $0.hours = (1...5).map { day in
    .with {
      $0.weekday = Int32(day)
      $0.start = "09:00"
      $0.end = "17:00"
    }
  }
  $0.holidays = ["2027-01-01"]
}

func slaPolicy(
  _ name: String, priority: Rapport_Support_V1_TicketPriority = .unspecified, tier: String = "",
  firstResponse: Int32 = 120, nextResponse: Int32 = 60, resolution: Int32 = 480
) -> Rapport_Support_V1_PutSlaPolicyRequest {
  .with {
    $0.policy = .with {
      $0.name = name
      $0.priority = priority
      $0.customerTier = tier
      $0.calendar = berlinOffice.name
      $0.firstResponseMinutes = firstResponse
      $0.nextResponseMinutes = nextResponse
      $0.resolutionMinutes = resolution
    }
  }
}

extension SupportEnv {
  /// Stores the Berlin office calendar and a standard policy (2 h first response, 1 h next
  /// response, 8 h resolution).
  func standardPolicy() async throws {
    _ = try await support.putBusinessCalendar(.with { $0.calendar = berlinOffice })
    _ = try await support.putSlaPolicy(slaPolicy("standard"))
  }

  /// Waits a few scanner passes (the scanner runs every 50 ms).
  func letTheScannerRun() async throws { try await Task.sleep(for: .milliseconds(400)) }
}

func target(_ ticket: Rapport_Support_V1_Ticket, _ kind: Rapport_Support_V1_SlaTargetKind, cycle: Int32 = 1) throws
  -> Rapport_Support_V1_SlaTarget
{
  try #require(ticket.slaTargets.first { $0.kind == kind && $0.cycle == cycle })
}

/// Friday 2026-03-06 16:00 in Berlin.
let fridayAfternoon = local("2026-03-06 16:00", "Europe/Berlin")

@Suite(.hangLimit) struct SlaPolicyTests {
  @Test func aBreachReachesTheEventFeedAtItsDueTimeInBusinessHoursAndOnlyOnce() async throws {
    let clock = ManualClock(fridayAfternoon)
    try await withSupport(clock: clock) { env in
      try await env.standardPolicy()
      let opened = try await env.support.openTicket(ticket(try await env.customer())).ticket
      #expect(opened.slaPolicy == "standard")
      let first = try target(opened, .firstResponse)
      // One business hour on Friday, one on Monday.
      #expect(wall(first.dueTime.date, "Europe/Berlin") == "2026-03-09 10:00")
      #expect(first.state == .active)
      #expect(wall(try target(opened, .resolution).dueTime.date, "Europe/Berlin") == "2026-03-09 16:00")

      // The weekend passes: 65 hours of wall time, no business time, no breach.
      clock.advance(by: 65 * 3600 + 59 * 60)  // Monday 09:59
      try await env.letTheScannerRun()
      #expect(try await env.events("SlaBreached").isEmpty)

      clock.advance(by: 61)  // Monday 10:00:01
      let breach = try await env.feed.subscribe(.with { $0.types = ["SlaBreached"] }) { response in
        for try await event in response.messages { return event }
        throw TestFailure("the feed ended without an SlaBreached")
      }
      guard case .slaBreached(let payload)? = breach.payload else { throw TestFailure("not an SlaBreached") }
      #expect(payload.ticketID == opened.id && payload.customerID == opened.customerID)
      #expect(payload.kind == .firstResponse && payload.cycle == 1 && payload.policy == "standard")
      #expect(wall(payload.dueAt.date, "Europe/Berlin") == "2026-03-09 10:00")
      #expect(payload.priority == .normal)

      var read = try await env.support.getTicket(.with { $0.ticketID = opened.id }).ticket
      #expect(try target(read, .firstResponse).state == .breached)
      #expect(try target(read, .firstResponse).breachTime == first.dueTime)
      #expect(try target(read, .resolution).state == .active)

      // A late reply does not un-breach it and emits nothing more; the resolution is met in time.
      _ = try await env.support.addMessage(reply(opened.id, .agent))
      _ = try await env.support.changeTicketStatus(status(opened.id, .solved))
      try await env.letTheScannerRun()
      read = try await env.support.getTicket(.with { $0.ticketID = opened.id }).ticket
      #expect(try target(read, .firstResponse).state == .breached)
      #expect(try target(read, .resolution).state == .achieved)
      #expect(try await env.events("SlaBreached").count == 1)

      let breached = try await env.support.listTickets(.with { $0.onlyBreached = true }).tickets
      #expect(breached.map(\.id) == [opened.id])
    }
  }

  @Test func waitingOnTheCustomerPausesTheClocksAndPriorityChangesRecomputeThem() async throws {
    let clock = ManualClock(local("2026-03-09 09:00", "Europe/Berlin"))
    try await withSupport(clock: clock) { env in
      try await env.standardPolicy()
      _ = try await env.support.putSlaPolicy(slaPolicy("urgent", priority: .urgent, firstResponse: 30, resolution: 240))
      let opened = try await env.support.openTicket(ticket(try await env.customer())).ticket
      clock.advance(by: 3600)  // 10:00, one business hour used
      var pending = try await env.support.changeTicketStatus(status(opened.id, .pending)).ticket
      #expect(pending.slaTargets.allSatisfy { $0.state == .paused && !$0.hasDueTime })
      clock.advance(by: 26 * 3600)  // Tuesday 12:00; waiting on the customer costs nothing
      try await env.letTheScannerRun()
      #expect(try await env.events("SlaBreached").isEmpty)
      // The customer answers: the ticket reopens and the clocks resume with 1 h of 2 h used.
      pending = try await env.support.addMessage(reply(opened.id, .customer, "Here is the photo")).ticket
      #expect(pending.status == .open)
      #expect(wall(try target(pending, .firstResponse).dueTime.date, "Europe/Berlin") == "2026-03-10 13:00")
      #expect(try target(pending, .firstResponse).consumedSeconds == 3600)

      // Urgent: 30 minutes for the first response, of which 1 h is already used → due now.
      let urgent = try await env.support.changeTicketPriority(.with {
        $0.ticketID = opened.id
        $0.priority = .urgent
      }).ticket
      #expect(urgent.slaPolicy == "urgent")
      #expect(urgent.priority == .urgent)
      #expect(try target(urgent, .firstResponse).targetSeconds == 1800)
      #expect(try target(urgent, .firstResponse).dueTime.date <= clock.wallClock.now)
      // Resolution: 4 h, 1 h used → due 15:00.
      #expect(wall(try target(urgent, .resolution).dueTime.date, "Europe/Berlin") == "2026-03-10 15:00")
      try await eventually("the scanner breached the urgent first response") {
        try await env.events("SlaBreached").count == 1
      }
      let changed = try await env.events("TicketPriorityChanged")
      #expect(changed.count == 1)
      await expectStatus(.invalidArgument, field: "priority") {
        try await env.support.changeTicketPriority(.with { $0.ticketID = opened.id })
      }
    }
  }

  @Test func policiesMatchTheCompanysTierAndPriorityMostSpecificFirst() async throws {
    try await withSupport { env in
      try await env.standardPolicy()
      _ = try await env.support.putSlaPolicy(slaPolicy("urgent", priority: .urgent, firstResponse: 30))
      _ = try await env.support.putSlaPolicy(slaPolicy("gold", tier: "gold", firstResponse: 60))
      _ = try await env.support.putSlaPolicy(slaPolicy("gold-urgent", priority: .urgent, tier: "gold", firstResponse: 15))
      let company = try await env.customers.createCompany(.with {
        $0.company.legalName = "Acme GmbH"
        $0.company.tier = "gold"
      }).company
      let buyer = try await env.customer("buyer")
      _ = try await env.customers.linkContact(.with {
        $0.companyID = company.id
        $0.customerID = buyer
        $0.role = "buyer"
      })
      let consumer = try await env.customer("consumer")
      func policy(_ customer: String, _ priority: Rapport_Support_V1_TicketPriority) async throws -> (String, String) {
        var request = ticket(customer)
        request.priority = priority
        let opened = try await env.support.openTicket(request).ticket
        return (opened.slaPolicy, opened.customerTier)
      }
      let results = [
        try await policy(consumer, .normal), try await policy(consumer, .urgent), try await policy(buyer, .normal),
        try await policy(buyer, .urgent),
      ]
      #expect(results.map(\.0) == ["standard", "urgent", "gold", "gold-urgent"])
      #expect(results.map(\.1) == ["", "", "gold", "gold"])
      let listed = try await env.support.listSlaPolicies(.init())
      #expect(listed.policies.map(\.name) == ["gold", "gold-urgent", "standard", "urgent"])
      #expect(listed.calendars == [berlinOffice.changed { $0.updateTime = listed.calendars[0].updateTime }])
    }
  }

  @Test func invalidCalendarsPoliciesAndTeamsNameTheFieldAndStoreNothing() async throws {
    try await withSupportService { support, database, _ in
      func refused(_ field: String, _ change: (inout Rapport_Support_V1_BusinessCalendar) -> Void) async {
        await expectStatus(.invalidArgument, field: field) {
          try await support.putBusinessCalendar(.with { $0.calendar = berlinOffice.changed(change) })
        }
      }
      await refused("calendar.time_zone") { $0.timeZone = "Mars/Olympus" }
      await refused("calendar.time_zone") { $0.timeZone = "" }
      await refused("calendar.name") { $0.name = "no spaces" }
      await refused("calendar.hours[0].start") { $0.hours[0].start = "9" }
      await refused("calendar.hours[1].end") { $0.hours[1].end = "24:30" }
      await refused("calendar.hours") { $0.hours.append(.with { $0.weekday = 1; $0.start = "16:00"; $0.end = "18:00" }) }
      await refused("calendar.hours[0]") { $0.hours[0].end = "08:00" }
      await refused("calendar.hours[2].weekday") { $0.hours[2].weekday = 8 }
      await refused("calendar.hours") { $0.hours = [] }
      await refused("calendar.holidays[0]") { $0.holidays = ["2027-13-01"] }
      #expect(try await count("support.calendars", database) == 0)

      await expectStatus(.notFound, mentioning: "berlin-office") { try await support.putSlaPolicy(slaPolicy("standard")) }
      _ = try await support.putBusinessCalendar(.with { $0.calendar = berlinOffice })
      await expectStatus(.invalidArgument, field: "policy.first_response_minutes") {
        try await support.putSlaPolicy(slaPolicy("none", firstResponse: 0, nextResponse: 0, resolution: 0))
      }
      await expectStatus(.invalidArgument, field: "policy.resolution_minutes") {
        try await support.putSlaPolicy(slaPolicy("long", resolution: 525_601))
      }
      await expectStatus(.invalidArgument, field: "policy.priority") {
        try await support.putSlaPolicy(slaPolicy("odd", priority: .UNRECOGNIZED(9)))
      }
      await expectStatus(.invalidArgument, field: "policy.name") { try await support.putSlaPolicy(slaPolicy("")) }
      #expect(try await count("support.sla_policies", database) == 0)

      await expectStatus(.invalidArgument, field: "team.agents[1]") {
        try await support.putTeam(.with { $0.team = .with { $0.name = "returns"; $0.agents = ["kim", "kim"] } })
      }
      await expectStatus(.invalidArgument, field: "team.agents") {
        try await support.putTeam(.with { $0.team = .with { $0.name = "returns"; $0.roundRobin = true } })
      }
      #expect(try await count("support.teams", database) == 0)
    }
  }

  @Test func theReportCountsAchievedAndBreachedTargetsPerPolicyAndPeriod() async throws {
    let clock = ManualClock(local("2026-03-09 09:00", "Europe/Berlin"))
    try await withSupport(clock: clock) { env in
      try await env.standardPolicy()
      let customer = try await env.customer()
      let answered = try await env.support.openTicket(ticket(customer)).ticket
      let ignored = try await env.support.openTicket(ticket(customer)).ticket
      clock.advance(by: 3600)
      _ = try await env.support.addMessage(reply(answered.id, .agent))
      clock.advance(by: 2 * 3600)  // 12:00: the ignored ticket's first response is an hour late
      try await eventually("the scanner breached the ignored ticket") {
        try await env.events("SlaBreached").count == 1
      }
      _ = try await env.support.changeTicketStatus(status(answered.id, .solved))
      // Next week: the ignored ticket's resolution is long overdue too; a new ticket's first response is met.
      clock.advance(by: 7 * 86_400)
      try await eventually("the scanner breached the ignored ticket's resolution") {
        try await env.events("SlaBreached").count == 2
      }
      let later = try await env.support.openTicket(ticket(customer)).ticket
      _ = try await env.support.addMessage(reply(later.id, .agent))

      let report = try await env.support.getSlaReport(.with {
        $0.from = .init(date: local("2026-03-01 00:00", "UTC"))
        $0.to = .init(date: local("2026-04-01 00:00", "UTC"))
        $0.period = .week
      }).rows
      func row(_ week: String, _ kind: Rapport_Support_V1_SlaTargetKind) -> [Int64]? {
        report.first { wall($0.periodStart.date, "UTC") == "\(week) 00:00" && $0.kind == kind }
          .map { [$0.achieved, $0.breached, $0.open] }
      }
      #expect(row("2026-03-09", .firstResponse) == [1, 1, 0])
      #expect(row("2026-03-09", .resolution) == [1, 1, 0])
      #expect(row("2026-03-16", .firstResponse) == [1, 0, 0])
      #expect(row("2026-03-16", .resolution) == [0, 0, 1])
      #expect(report.allSatisfy { $0.policy == "standard" })
      #expect(report.first { $0.kind == .firstResponse }?.achievedRatio == 0.5)
      let late = try await env.events("SlaBreached").compactMap { event -> String? in
        guard case .slaBreached(let breach)? = event.payload else { return nil }
        return breach.ticketID
      }
      #expect(late == [ignored.id, ignored.id])
      await expectStatus(.invalidArgument, field: "period") {
        try await env.support.getSlaReport(.with {
          $0.from = .init(date: local("2026-03-01 00:00", "UTC"))
          $0.to = .init(date: local("2026-04-01 00:00", "UTC"))
        })
      }
      await expectStatus(.invalidArgument, field: "to") {
        try await env.support.getSlaReport(.with {
          $0.from = .init(date: local("2026-03-01 00:00", "UTC"))
          $0.to = .init(date: local("2028-04-01 00:00", "UTC"))
          $0.period = .month
        })
      }
    }
  }
}
