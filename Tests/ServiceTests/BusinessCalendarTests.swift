import Foundation
import Testing

@testable import SupportService

/// Mon–Fri 09:00–17:00.
let officeHours = (1...5).map { BusinessCalendar.Window(weekday: $0, startMinute: 9 * 60, endMinute: 17 * 60) }
/// Every day, all day.
let allDay = (1...7).map { BusinessCalendar.Window(weekday: $0, startMinute: 0, endMinute: 1440) }

/// A local wall time ("2026-11-23 10:00") in `zone`, and back.
func local(_ text: String, _ zone: String) -> Date {
  let formatter = DateFormatter()
  formatter.locale = Locale(identifier: "en_US_POSIX")
  formatter.timeZone = TimeZone(identifier: zone)
  formatter.dateFormat = "yyyy-MM-dd HH:mm"
  return formatter.date(from: text)!
}

func wall(_ date: Date, _ zone: String) -> String {
  let formatter = DateFormatter()
  formatter.locale = Locale(identifier: "en_US_POSIX")
  formatter.timeZone = TimeZone(identifier: zone)
  formatter.dateFormat = "yyyy-MM-dd HH:mm"
  return formatter.string(from: date)
}

struct DueCase: Sendable, CustomTestStringConvertible {
  let name: String
  let zone: String
  let windows: [BusinessCalendar.Window]
  var holidays: [String] = []
  let start: String
  let hours: Double
  let due: String
  var testDescription: String { name }
}

@Suite(.hangLimit) struct BusinessCalendarTests {
  @Test(arguments: [
    DueCase(name: "within one day", zone: "Europe/Berlin", windows: officeHours, start: "2026-11-23 10:00", hours: 4, due: "2026-11-23 14:00"),
    DueCase(name: "ends exactly at closing", zone: "Europe/Berlin", windows: officeHours, start: "2026-11-23 09:00", hours: 8, due: "2026-11-23 17:00"),
    DueCase(name: "over the weekend", zone: "Europe/Berlin", windows: officeHours, start: "2026-11-27 16:00", hours: 2, due: "2026-11-30 10:00"),
    DueCase(name: "opened on a Saturday", zone: "Europe/Berlin", windows: officeHours, start: "2026-11-28 12:00", hours: 1, due: "2026-11-30 10:00"),
    DueCase(name: "opened before opening", zone: "Europe/Berlin", windows: officeHours, start: "2026-11-23 06:30", hours: 1, due: "2026-11-23 10:00"),
    DueCase(name: "over a weekend and a holiday Monday", zone: "Europe/Berlin", windows: officeHours, holidays: ["2026-11-30"], start: "2026-11-27 16:00", hours: 2, due: "2026-12-01 10:00"),
    DueCase(name: "a week of business time", zone: "Europe/Berlin", windows: officeHours, start: "2026-11-23 09:00", hours: 40, due: "2026-11-27 17:00"),
    DueCase(name: "lunch break", zone: "Europe/Berlin", windows: [
      .init(weekday: 1, startMinute: 9 * 60, endMinute: 12 * 60), .init(weekday: 1, startMinute: 13 * 60, endMinute: 17 * 60),
    ], start: "2026-11-23 11:00", hours: 2, due: "2026-11-23 14:00"),
    DueCase(name: "24/7 across spring-forward (the day has 23 hours)", zone: "Europe/Berlin", windows: allDay, start: "2026-03-28 12:00", hours: 24, due: "2026-03-29 13:00"),
    DueCase(name: "24/7 across fall-back (the day has 25 hours)", zone: "Europe/Berlin", windows: allDay, start: "2026-10-24 12:00", hours: 24, due: "2026-10-25 11:00"),
    DueCase(name: "a Sunday-only window is 23 real hours on spring-forward", zone: "Europe/Berlin", windows: [.init(weekday: 7, startMinute: 0, endMinute: 1440)], start: "2026-03-29 00:00", hours: 23, due: "2026-03-30 00:00"),
    DueCase(name: "office hours unaffected by the DST night", zone: "Europe/Berlin", windows: officeHours, start: "2026-03-27 16:00", hours: 2, due: "2026-03-30 10:00"),
    DueCase(name: "another time zone", zone: "America/New_York", windows: officeHours, start: "2026-11-23 08:00", hours: 1, due: "2026-11-23 10:00"),
    DueCase(name: "US spring-forward weekend", zone: "America/New_York", windows: officeHours, start: "2026-03-06 16:00", hours: 2, due: "2026-03-09 10:00"),
    DueCase(name: "zero time is the start", zone: "Europe/Berlin", windows: officeHours, start: "2026-11-28 12:00", hours: 0, due: "2026-11-28 12:00"),
  ])
  func dueTimesCountOnlyBusinessHours(_ c: DueCase) throws {
    let calendar = try BusinessCalendar(timeZone: c.zone, windows: c.windows, holidays: c.holidays)
    let start = local(c.start, c.zone)
    let due = calendar.adding(c.hours * 3600, to: start)
    #expect(wall(due, c.zone) == c.due)
    // The business time between start and due is exactly what was added.
    #expect(calendar.businessSeconds(from: start, to: due) == c.hours * 3600)
  }

  @Test func businessSecondsSkipNightsWeekendsHolidaysAndCountDSTDaysAtTheirRealLength() throws {
    let berlin = try BusinessCalendar(timeZone: "Europe/Berlin", windows: officeHours, holidays: ["2026-12-25"])
    let z = "Europe/Berlin"
    #expect(berlin.businessSeconds(from: local("2026-11-27 16:00", z), to: local("2026-11-30 10:00", z)) == 2 * 3600)
    #expect(berlin.businessSeconds(from: local("2026-11-28 08:00", z), to: local("2026-11-29 20:00", z)) == 0)
    #expect(berlin.businessSeconds(from: local("2026-12-24 16:00", z), to: local("2026-12-28 10:00", z)) == 2 * 3600)
    #expect(berlin.businessSeconds(from: local("2026-11-23 12:00", z), to: local("2026-11-23 11:00", z)) == 0)
    let sundays = try BusinessCalendar(timeZone: z, windows: [.init(weekday: 7, startMinute: 0, endMinute: 1440)])
    #expect(sundays.businessSeconds(from: local("2026-03-29 00:00", z), to: local("2026-03-30 00:00", z)) == 23 * 3600)
    #expect(sundays.businessSeconds(from: local("2026-10-25 00:00", z), to: local("2026-10-26 00:00", z)) == 25 * 3600)
  }

  @Test func timeWaitingOnTheCustomerDoesNotCount() throws {
    let z = "Europe/Berlin"
    let calendar = try BusinessCalendar(timeZone: z, windows: officeHours)
    var clock = SlaClock(target: 8 * 3600, runningSince: local("2026-11-23 09:00", z))
    #expect(wall(try #require(clock.due(in: calendar)), z) == "2026-11-23 17:00")
    clock.pause(at: local("2026-11-23 11:00", z), in: calendar)  // pending: waiting on the customer
    #expect(clock.due(in: calendar) == nil)
    #expect(clock.consumed == 2 * 3600)
    clock.resume(at: local("2026-11-25 09:00", z))  // the customer answered on Wednesday
    #expect(wall(try #require(clock.due(in: calendar)), z) == "2026-11-25 15:00")
    // Paused again at noon (3 more hours consumed), resumed after closing: 3 hours remain from Thursday 09:00.
    clock.pause(at: local("2026-11-25 12:00", z), in: calendar)
    #expect(clock.consumed == 5 * 3600)
    clock.resume(at: local("2026-11-25 20:00", z))
    #expect(wall(try #require(clock.due(in: calendar)), z) == "2026-11-26 12:00")
  }

  @Test(arguments: [
    ("Mars/Olympus", officeHours, [String](), "time_zone"),
    ("Europe/Berlin", [BusinessCalendar.Window](), [String](), "hours"),
    ("Europe/Berlin", [BusinessCalendar.Window(weekday: 8, startMinute: 0, endMinute: 60)], [String](), "hours[0].weekday"),
    ("Europe/Berlin", [BusinessCalendar.Window(weekday: 1, startMinute: 600, endMinute: 540)], [String](), "hours[0]"),
    ("Europe/Berlin", [BusinessCalendar.Window(weekday: 1, startMinute: 0, endMinute: 1441)], [String](), "hours[0]"),
    ("Europe/Berlin", [
      BusinessCalendar.Window(weekday: 2, startMinute: 540, endMinute: 720),
      BusinessCalendar.Window(weekday: 2, startMinute: 660, endMinute: 780),
    ], [String](), "hours"),
    ("Europe/Berlin", officeHours, ["2026-13-01"], "holidays[0]"),
  ])
  func invalidCalendarsNameWhatIsWrong(
    _ zone: String, _ windows: [BusinessCalendar.Window], _ holidays: [String], _ field: String
  ) {
    #expect(throws: BusinessCalendar.Invalid.self) {
      try BusinessCalendar(timeZone: zone, windows: windows, holidays: holidays)
    }
    do {
      _ = try BusinessCalendar(timeZone: zone, windows: windows, holidays: holidays)
    } catch let error as BusinessCalendar.Invalid {
      #expect(error.field == field, "\(error)")
    } catch {
      Issue.record("unexpected \(error)")
    }
  }
}
