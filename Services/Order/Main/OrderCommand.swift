import ArgumentParser
import OrderService
import Logging
import RapportCore

/// `rapport-order`: parses the command line (unknown flags are refused; `--help`, `--version`) and
/// runs the service that `OrderApp.build` assembles.
@main
struct OrderCommand: ServiceCommand {
  static let service = "order"
  static let configuration = CommandConfiguration.service(service, abstract: "The order service: ingest, lifecycle, payments, refunds, carts.")

  @OptionGroup var common: CommonOptions
  @Option(name: .customLong("customer-addr"), help: "Customer service, host:port (default 127.0.0.1:50051).") var customerAddr: String?
  @Option(name: .customLong("customer-timeout-ms"), help: "Deadline of a call to the customer service (default 1000).") var customerTimeoutMs: String?
  @Option(name: .customLong("cart-abandon-after-s"), help: "A cart idle this long is abandoned (default 3600).") var cartAbandonAfterS: String?
  @Option(name: .customLong("scan-interval-ms"), help: "How often carts and due dates are scanned (default 60000).") var scanIntervalMs: String?
  @Option(name: .customLong("clock-file"), help: "Read \"now\" from this file (rehearsals and tests only, never production).") var clockFile: String?

  var ownFlags: [String: String?] {
    ["customer-addr": customerAddr, "customer-timeout-ms": customerTimeoutMs, "cart-abandon-after-s": cartAbandonAfterS, "scan-interval-ms": scanIntervalMs, "clock-file": clockFile]
  }

  static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try OrderApp.build(settings: settings, logger: logger)
  }
}
