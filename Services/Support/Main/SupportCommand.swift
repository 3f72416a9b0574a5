import ArgumentParser
import SupportService
import Logging
import RapportCore

/// `rapport-support`: parses the command line (unknown flags are refused; `--help`, `--version`) and
/// runs the service that `SupportApp.build` assembles.
@main
struct SupportCommand: ServiceCommand {
  static let service = "support"
  static let configuration = CommandConfiguration.service(service, abstract: "The support-ticket service: tickets, threads, assignment, SLAs, CSAT.")

  @OptionGroup var common: CommonOptions
  @Option(name: .customLong("customer-addr"), help: "Customer service, host:port (default 127.0.0.1:50051).") var customerAddr: String?
  @Option(name: .customLong("order-addr"), help: "Order service, host:port (default 127.0.0.1:50052).") var orderAddr: String?
  @Option(name: .customLong("upstream-timeout-ms"), help: "Deadline of a call to another service (default 1000).") var upstreamTimeoutMs: String?
  @Option(name: .customLong("scan-interval-ms"), help: "How often SLA due times and solved tickets are scanned (default 15000).") var scanIntervalMs: String?
  @Option(name: .customLong("auto-close-after-days"), help: "Close tickets solved this many days ago (default 7).") var autoCloseAfterDays: String?
  @Option(name: .customLong("clock-file"), help: "Read \"now\" from this file (rehearsals and tests only, never production).") var clockFile: String?

  var ownFlags: [String: String?] {
    ["customer-addr": customerAddr, "order-addr": orderAddr, "upstream-timeout-ms": upstreamTimeoutMs, "scan-interval-ms": scanIntervalMs, "auto-close-after-days": autoCloseAfterDays, "clock-file": clockFile]
  }

  static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try SupportApp.build(settings: settings, logger: logger)
  }
}
