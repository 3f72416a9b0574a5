import ArgumentParser
import AnalyticsService
import Logging
import RapportCore

/// `rapport-analytics`: parses the command line (unknown flags are refused; `--help`, `--version`) and
/// runs the service that `AnalyticsApp.build` assembles.
@main
struct AnalyticsCommand: ServiceCommand {
  static let service = "analytics"
  static let configuration = CommandConfiguration.service(service, abstract: "The analytics service: consumes the other services' events.")

  @OptionGroup var common: CommonOptions
  @Option(name: .customLong("customer-addr"), help: "Customer service, host:port (default 127.0.0.1:50051).") var customerAddr: String?
  @Option(name: .customLong("order-addr"), help: "Order service, host:port (default 127.0.0.1:50052).") var orderAddr: String?
  @Option(name: .customLong("support-addr"), help: "Support service, host:port (default 127.0.0.1:50053).") var supportAddr: String?
  @Option(name: .customLong("rfm-interval-s"), help: "How often the RFM quintile edges are recomputed, in seconds (default 3600; also at start).") var rfmIntervalS: String?

  @Option(name: .customLong("fit-interval-s"), help: "How often BG/NBD and Gamma-Gamma are refitted per currency, in seconds (default 3600; also at start).") var fitIntervalS: String?
  @Option(name: .customLong("segment-interval-s"), help: "How often every rule segment is recomputed for every customer, in seconds (default 300; also at start).") var segmentIntervalS: String?
  @Option(name: .customLong("monthly-discount-rate"), help: "CLV's monthly discount rate, in [0, 1) (default 0.01).") var monthlyDiscountRate: String?
  @Option(name: .customLong("report-time-zones"), help: "Comma-separated IANA time zones the shop reports in: sales summaries and cohorts in them are kept like UTC's; other zones are derived from their rows (default none).") var reportTimeZones: String?
  @Option(name: .customLong("learned-time-zones"), help: "How many other zones reads ask for are kept too, built in the background and dropped after 30 days unread (default 4; 0: none).") var learnedTimeZones: Int?
  @Option(name: .customLong("sub-hour-time-zones"), help: "true: also keep one zone per clock a half or quarter hour off UTC (twelve, Asia/Kolkata among them), built in the background, so reads in those clocks are fast from the first; each adds work to every order applied (default true; false drops them).") var subHourTimeZones: String?

  var ownFlags: [String: String?] {
    [
      "customer-addr": customerAddr, "order-addr": orderAddr, "support-addr": supportAddr, "rfm-interval-s": rfmIntervalS,
      "fit-interval-s": fitIntervalS, "monthly-discount-rate": monthlyDiscountRate, "segment-interval-s": segmentIntervalS,
      "report-time-zones": reportTimeZones, "learned-time-zones": learnedTimeZones.map(String.init),
      "sub-hour-time-zones": subHourTimeZones,
    ]
  }

  static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try AnalyticsApp.build(settings: settings, logger: logger)
  }
}
