import Foundation
import RapportCore
import Testing

@testable import SupportService

/// The SLA rules without a database: Mon–Fri 09:00–17:00 Berlin, first response 2 h, next response
/// 1 h, resolution 8 h (business time).
@Suite(.hangLimit) struct SlaTrackerTests {
  static let zone = "Europe/Berlin"
  let policy = SlaPolicy(
    name: "standard", calendar: try! BusinessCalendar(timeZone: zone, windows: officeHours),
    targets: [.firstResponse: 7200, .nextResponse: 3600, .resolution: 28_800])

  /// A Berlin wall time on the microsecond grid, like every `now` the service uses.
  func at(_ text: String) -> Date { local(text, Self.zone).onMicrosecondGrid }

  func target(_ tracker: SlaTracker, _ kind: SlaKind, cycle: Int = 1) throws -> SlaTarget {
    try #require(tracker.targets.first { $0.kind == kind && $0.cycle == cycle })
  }

  func due(_ tracker: SlaTracker, _ kind: SlaKind, cycle: Int = 1) throws -> String? {
    try target(tracker, kind, cycle: cycle).dueAt.map { wall($0, Self.zone) }
  }

  @Test func openingStartsFirstResponseAndResolutionInBusinessTime() throws {
    var sla = SlaTracker(policy: policy, targets: [])
    sla.open(at: at("2026-03-06 16:00"))  // a Friday
    #expect(try due(sla, .firstResponse) == "2026-03-09 10:00")
    #expect(try due(sla, .resolution) == "2026-03-09 16:00")
    #expect(sla.targets.allSatisfy { $0.state == .active })
    #expect(!sla.targets.contains { $0.kind == .nextResponse })
  }

  @Test func aReplyBeforeTheDueTimeAchievesAndOneAfterItIsABreachAtTheDueTime() throws {
    var early = SlaTracker(policy: policy, targets: [])
    early.open(at: at("2026-03-09 09:00"))
    early.agentReplied(at: at("2026-03-09 10:59"))
    #expect(try target(early, .firstResponse).state == .achieved)
    #expect(early.breached.isEmpty)

    var late = SlaTracker(policy: policy, targets: [])
    late.open(at: at("2026-03-09 09:00"))
    late.agentReplied(at: at("2026-03-09 11:01"))
    let first = try target(late, .firstResponse)
    #expect(first.state == .breached)
    #expect(first.breachedAt.map { wall($0, Self.zone) } == "2026-03-09 11:00")
    #expect(late.breached.map(\.kind) == [.firstResponse])
    // A breached target stays breached and is reported once.
    late.agentReplied(at: at("2026-03-09 12:00"))
    late.statusChanged(from: .open, to: .solved, at: at("2026-03-09 12:30"))
    #expect(try target(late, .firstResponse).state == .breached)
    #expect(late.breached.count == 1)
    #expect(try target(late, .resolution).state == .achieved)
  }

  @Test func pendingPausesEveryRunningTargetAndResumingMovesTheDueTimeOut() throws {
    var sla = SlaTracker(policy: policy, targets: [])
    sla.open(at: at("2026-03-09 09:00"))
    sla.statusChanged(from: .new, to: .pending, at: at("2026-03-09 10:00"))  // 1 h consumed
    #expect(sla.targets.allSatisfy { $0.state == .paused && $0.dueAt == nil })
    #expect(try target(sla, .firstResponse).clock.consumed == 3600)
    sla.statusChanged(from: .pending, to: .open, at: at("2026-03-10 14:00"))
    #expect(try due(sla, .firstResponse) == "2026-03-10 15:00")
    #expect(try due(sla, .resolution) == "2026-03-11 13:00")  // 7 h left: 3 on Tuesday, 4 on Wednesday
    // Waiting on the customer past the due time is not a breach.
    #expect(sla.breached.isEmpty)
  }

  @Test func eachCustomerMessageAfterAReplyStartsANextResponseCycle() throws {
    var sla = SlaTracker(policy: policy, targets: [])
    sla.open(at: at("2026-03-09 09:00"))
    sla.customerWrote(at: at("2026-03-09 09:05"), afterFirstResponse: false)
    #expect(!sla.targets.contains { $0.kind == .nextResponse })
    sla.agentReplied(at: at("2026-03-09 09:30"))
    sla.customerWrote(at: at("2026-03-09 16:30"), afterFirstResponse: true)
    #expect(try due(sla, .nextResponse) == "2026-03-10 09:30")
    sla.customerWrote(at: at("2026-03-09 16:40"), afterFirstResponse: true)  // still one open cycle
    #expect(sla.targets.filter { $0.kind == .nextResponse }.count == 1)
    sla.agentReplied(at: at("2026-03-10 09:10"))
    #expect(try target(sla, .nextResponse).state == .achieved)
    sla.customerWrote(at: at("2026-03-10 10:00"), afterFirstResponse: true)
    #expect(try target(sla, .nextResponse, cycle: 2).state == .active)
    #expect(try due(sla, .nextResponse, cycle: 2) == "2026-03-10 11:00")
  }

  @Test func solvingMeetsOpenTargetsAndReopeningStartsANewResolutionTarget() throws {
    var sla = SlaTracker(policy: policy, targets: [])
    sla.open(at: at("2026-03-09 09:00"))
    sla.statusChanged(from: .new, to: .solved, at: at("2026-03-09 10:00"))
    #expect(sla.targets.allSatisfy { $0.state == .achieved })
    sla.statusChanged(from: .solved, to: .open, at: at("2026-03-09 11:00"))
    #expect(try target(sla, .resolution, cycle: 2).state == .active)
    #expect(try due(sla, .resolution, cycle: 2) == "2026-03-10 11:00")
    sla.statusChanged(from: .open, to: .solved, at: at("2026-03-09 12:00"))
    sla.statusChanged(from: .solved, to: .closed, at: at("2026-03-09 13:00"))
    #expect(sla.targets.count == 3)
  }

  @Test func aNewPolicyKeepsConsumedTimeRecomputesDueTimesAndDropsMissingTargets() throws {
    let urgent = SlaPolicy(
      name: "urgent", calendar: try BusinessCalendar(timeZone: "Europe/Berlin", windows: allDay),
      targets: [.firstResponse: 5400])
    var sla = SlaTracker(policy: policy, targets: [])
    sla.open(at: at("2026-03-09 09:00"))
    sla.replace(
      policy: urgent, at: at("2026-03-09 10:00"), needsFirstResponse: true, needsResolution: true, paused: false)
    // 1 h consumed of the new 1.5 h target: due 30 minutes after the change, in the 24/7 calendar.
    #expect(try due(sla, .firstResponse) == "2026-03-09 10:30")
    #expect(!sla.targets.contains { $0.kind == .resolution })
    // Back to the standard policy at 10:15: first response has 1 h 15 min consumed of 2 h; the
    // resolution target the urgent policy lacked starts at the change.
    sla.replace(
      policy: policy, at: at("2026-03-09 10:15"), needsFirstResponse: true, needsResolution: true, paused: false)
    #expect(try due(sla, .firstResponse) == "2026-03-09 11:00")
    #expect(try due(sla, .resolution) == "2026-03-10 10:15")
    // A shorter target that is already used up is due at once and breached at the next step.
    let tight = SlaPolicy(name: "tight", calendar: policy.calendar, targets: [.firstResponse: 600])
    sla.replace(policy: tight, at: at("2026-03-09 10:30"), needsFirstResponse: true, needsResolution: true, paused: false)
    #expect(try due(sla, .firstResponse) == "2026-03-09 10:30")
    sla.settle(at: at("2026-03-09 10:30"))
    #expect(try target(sla, .firstResponse).state == .breached)
  }

  @Test func withoutAPolicyNothingIsTracked() {
    var sla = SlaTracker(policy: nil, targets: [])
    sla.open(at: at("2026-03-09 09:00"))
    sla.customerWrote(at: at("2026-03-09 10:00"), afterFirstResponse: true)
    #expect(sla.targets.isEmpty)
  }
}
