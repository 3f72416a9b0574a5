import Foundation
import RapportCore
import RapportProtos

typealias SlaKind = Rapport_Support_V1_SlaTargetKind
typealias SlaState = Rapport_Support_V1_SlaState

/// An SLA policy with its calendar, as matched for a ticket.
struct SlaPolicy: Sendable {
  var name: String
  var calendar: BusinessCalendar
  /// Targets in business seconds; a kind that is absent has no target.
  var targets: [SlaKind: Int]
}

/// One SLA target of a ticket, as stored.
struct SlaTarget: Sendable, Equatable {
  var kind: SlaKind
  var cycle: Int
  var state: SlaState
  var clock: SlaClock
  var startedAt: Date
  var dueAt: Date?
  var achievedAt: Date?
  var breachedAt: Date?

  var isOpen: Bool { state == .active || state == .paused }

  var proto: Rapport_Support_V1_SlaTarget {
    .with {
      $0.kind = kind
      $0.cycle = Int32(cycle)
      $0.state = state
      $0.targetSeconds = Int64(clock.target)
      $0.consumedSeconds = Int64(clock.consumed)
      $0.startTime = .init(microsecondsOf: startedAt)
      if let dueAt { $0.dueTime = .init(microsecondsOf: dueAt) }
      if let achievedAt { $0.achieveTime = .init(microsecondsOf: achievedAt) }
      if let breachedAt { $0.breachTime = .init(microsecondsOf: breachedAt) }
    }
  }
}

/// A ticket's SLA targets under its policy: the pure rules, applied by `TicketLifecycle` in the
/// ticket's transaction. Every step first settles targets whose due time has passed (they become
/// BREACHED at their due time, exactly once — the scanner does the same for tickets nobody touches).
struct SlaTracker: Sendable {
  var policy: SlaPolicy?
  var targets: [SlaTarget]

  /// Targets that became BREACHED in this step (for `SlaBreached` events).
  private(set) var breached: [SlaTarget] = []

  init(policy: SlaPolicy?, targets: [SlaTarget]) {
    self.policy = policy
    self.targets = targets
  }

  /// A new ticket's first-response and resolution targets, running from `now`.
  mutating func open(at now: Date) {
    start(.firstResponse, at: now)
    start(.resolution, at: now)
  }

  /// A public agent reply meets the open first- and next-response targets.
  mutating func agentReplied(at now: Date) {
    settle(at: now)
    achieve(at: now) { $0 == .firstResponse || $0 == .nextResponse }
  }

  /// A public customer message after the first response starts a next-response target, unless one is
  /// already open.
  mutating func customerWrote(at now: Date, afterFirstResponse: Bool) {
    settle(at: now)
    guard afterFirstResponse, !targets.contains(where: { $0.kind == .nextResponse && $0.isOpen }) else { return }
    start(.nextResponse, at: now)
  }

  /// Status effects: PENDING pauses every open target and leaving it resumes them; SOLVED meets every
  /// open target; reopening a SOLVED ticket starts a new resolution target.
  mutating func statusChanged(
    from: Rapport_Support_V1_TicketStatus, to: Rapport_Support_V1_TicketStatus, at now: Date
  ) {
    settle(at: now)
    if to == .solved {
      achieve(at: now) { _ in true }
      return
    }
    if to == .pending {
      for index in targets.indices where targets[index].state == .active { pause(index, at: now) }
    } else if from == .pending {
      for index in targets.indices where targets[index].state == .paused { resume(index, at: now) }
    }
    if from == .solved && to != .closed { start(.resolution, at: now) }
  }

  /// A new policy (after a priority change): open targets keep the business time they consumed under
  /// the old calendar and get the new policy's target measured in its calendar from `now`; open
  /// targets the new policy lacks are dropped; a first-response or resolution target the ticket still
  /// needs and lacks starts now.
  mutating func replace(
    policy new: SlaPolicy?, at now: Date, needsFirstResponse: Bool, needsResolution: Bool, paused: Bool
  ) {
    settle(at: now)
    for index in targets.indices where targets[index].state == .active { pause(index, at: now) }
    policy = new
    targets.removeAll { $0.isOpen && new?.targets[$0.kind] == nil }
    for index in targets.indices where targets[index].isOpen {
      targets[index].clock.target = TimeInterval(new?.targets[targets[index].kind] ?? 0)
      if !paused { resume(index, at: now) }
    }
    if needsFirstResponse && !targets.contains(where: { $0.kind == .firstResponse }) { start(.firstResponse, at: now) }
    if needsResolution && !targets.contains(where: { $0.kind == .resolution && $0.isOpen }) { start(.resolution, at: now) }
    if paused { for index in targets.indices where targets[index].state == .active { pause(index, at: now) } }
  }

  /// Running targets whose due time is not after `now` become BREACHED at their due time.
  mutating func settle(at now: Date) {
    for index in targets.indices {
      guard targets[index].state == .active, let due = targets[index].dueAt, due <= now else { continue }
      targets[index].state = .breached
      targets[index].breachedAt = due
      breached.append(targets[index])
    }
  }

  private mutating func start(_ kind: SlaKind, at now: Date) {
    guard let policy, let seconds = policy.targets[kind] else { return }
    let cycle = (targets.filter { $0.kind == kind }.map(\.cycle).max() ?? 0) + 1
    let clock = SlaClock(target: TimeInterval(seconds), consumed: 0, runningSince: now)
    targets.append(
      SlaTarget(kind: kind, cycle: cycle, state: .active, clock: clock, startedAt: now, dueAt: clock.due(in: policy.calendar)?.onMicrosecondGrid))
  }

  private mutating func achieve(at now: Date, _ kinds: (SlaKind) -> Bool) {
    for index in targets.indices where targets[index].isOpen && kinds(targets[index].kind) {
      if let policy { targets[index].clock.pause(at: now, in: policy.calendar) }
      targets[index].state = .achieved
      targets[index].achievedAt = now
    }
  }

  private mutating func pause(_ index: Int, at now: Date) {
    guard let policy else { return }
    targets[index].clock.pause(at: now, in: policy.calendar)
    targets[index].state = .paused
    targets[index].dueAt = nil
  }

  private mutating func resume(_ index: Int, at now: Date) {
    guard let policy else { return }
    targets[index].clock.resume(at: now)
    targets[index].state = .active
    targets[index].dueAt = targets[index].clock.due(in: policy.calendar)?.onMicrosecondGrid
  }
}
