import Foundation
import RapportCore
import RapportProtos

/// Validation of SLA policies, calendars and teams; each refusal is INVALID_ARGUMENT naming the field.
enum SlaInput {
  /// The longest target: a year of business minutes.
  static let maxTargetMinutes: Int32 = 525_600
  static let maxHolidays = 1000
  static let maxAgents = 100

  /// A calendar definition as a `BusinessCalendar`; `field` prefixes the field names in refusals.
  static func calendar(_ proto: Rapport_Support_V1_BusinessCalendar, field: String) throws -> BusinessCalendar {
    guard proto.holidays.count <= maxHolidays else {
      throw RPCFailure.invalid("\(field).holidays", "at most \(maxHolidays) holidays")
    }
    var windows: [BusinessCalendar.Window] = []
    for (index, hours) in proto.hours.enumerated() {
      let at = "\(field).hours[\(index)]"
      windows.append(
        .init(
          weekday: Int(hours.weekday), startMinute: try minute(hours.start, field: "\(at).start", allowMidnight: false),
          endMinute: try minute(hours.end, field: "\(at).end", allowMidnight: true)))
    }
    do {
      return try BusinessCalendar(timeZone: proto.timeZone, windows: windows, holidays: proto.holidays)
    } catch let invalid as BusinessCalendar.Invalid {
      throw RPCFailure.invalid("\(field).\(invalid.field)", invalid.reason)
    }
  }

  /// A calendar as the client sent it, validated, with its name.
  static func calendar(_ proto: Rapport_Support_V1_BusinessCalendar) throws -> Rapport_Support_V1_BusinessCalendar {
    var clean = proto
    clean.name = try name(proto.name, field: "calendar.name")
    clean.timeZone = try Validate.required(proto.timeZone, field: "calendar.time_zone", max: 64)
    _ = try calendar(clean, field: "calendar")
    return clean
  }

  static func policy(_ proto: Rapport_Support_V1_SlaPolicy) throws -> Rapport_Support_V1_SlaPolicy {
    var clean = Rapport_Support_V1_SlaPolicy()
    clean.name = try name(proto.name, field: "policy.name")
    clean.priority = try Validate.known(proto.priority, field: "policy.priority")
    clean.customerTier = try Validate.optional(proto.customerTier, field: "policy.customer_tier", max: 32)
    clean.calendar = try name(proto.calendar, field: "policy.calendar")
    let targets = [
      ("first_response_minutes", proto.firstResponseMinutes), ("next_response_minutes", proto.nextResponseMinutes),
      ("resolution_minutes", proto.resolutionMinutes),
    ]
    for (field, minutes) in targets where !(0...maxTargetMinutes).contains(minutes) {
      throw RPCFailure.invalid("policy.\(field)", "must be between 0 and \(maxTargetMinutes) minutes")
    }
    guard targets.contains(where: { $0.1 > 0 }) else {
      throw RPCFailure.invalid("policy.first_response_minutes", "at least one target is required")
    }
    clean.firstResponseMinutes = proto.firstResponseMinutes
    clean.nextResponseMinutes = proto.nextResponseMinutes
    clean.resolutionMinutes = proto.resolutionMinutes
    return clean
  }

  static func team(_ proto: Rapport_Support_V1_Team) throws -> Rapport_Support_V1_Team {
    var clean = Rapport_Support_V1_Team()
    clean.name = try Validate.required(proto.name, field: "team.name", max: 64)
    guard proto.agents.count <= maxAgents else { throw RPCFailure.invalid("team.agents", "at most \(maxAgents) agents") }
    for (index, agent) in proto.agents.enumerated() {
      let clean_ = try Validate.required(agent, field: "team.agents[\(index)]", max: 200)
      guard !clean.agents.contains(clean_) else {
        throw RPCFailure.invalid("team.agents[\(index)]", "appears twice")
      }
      clean.agents.append(clean_)
    }
    guard !proto.roundRobin || !clean.agents.isEmpty else {
      throw RPCFailure.invalid("team.agents", "a round-robin team needs at least one agent")
    }
    clean.roundRobin = proto.roundRobin
    return clean
  }

  /// A calendar or policy name: 1–64 letters, digits, "-", "_".
  static func name(_ value: String, field: String) throws -> String {
    let name = try Validate.required(value, field: field, max: 64)
    guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_".contains($0)) }) else {
      throw RPCFailure.invalid(field, "must be letters, digits, - and _")
    }
    return name
  }

  /// "HH:MM" as minutes after midnight; "24:00" only where `allowMidnight`.
  static func minute(_ text: String, field: String, allowMidnight: Bool) throws -> Int {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false)
    guard text.count == 5, parts.count == 2, let hour = Int(parts[0]), let minute = Int(parts[1]),
      (0...59).contains(minute), (0...23).contains(hour) || (allowMidnight && hour == 24 && minute == 0)
    else { throw RPCFailure.invalid(field, "must be a time HH:MM\(allowMidnight ? " (24:00 for midnight)" : "")") }
    return hour * 60 + minute
  }
}
