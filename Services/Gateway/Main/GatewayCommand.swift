import ArgumentParser
import GatewayService
import Logging
import RapportCore

/// `rapport-gateway`: parses the command line (unknown flags are refused; `--help`, `--version`) and
/// runs the service that `GatewayApp.build` assembles.
@main
struct GatewayCommand: ServiceCommand {
  static let service = "gateway"
  static let configuration = CommandConfiguration.service(service, abstract: "The partner gateway: the 360-degree customer view.")

  @OptionGroup var common: CommonOptions
  @Option(name: .customLong("customer-addr"), help: "Customer service, host:port (default 127.0.0.1:50051).") var customerAddr: String?
  @Option(name: .customLong("order-addr"), help: "Order service, host:port (default 127.0.0.1:50052).") var orderAddr: String?
  @Option(name: .customLong("support-addr"), help: "Support service, host:port (default 127.0.0.1:50053).") var supportAddr: String?
  @Option(name: .customLong("analytics-addr"), help: "Analytics service, host:port (default 127.0.0.1:50054).") var analyticsAddr: String?
  @Option(name: .customLong("view-timeout-ms"), help: "Budget of a view when the caller sends no deadline (default 2000).") var viewTimeoutMs: String?

  var ownFlags: [String: String?] {
    ["customer-addr": customerAddr, "order-addr": orderAddr, "support-addr": supportAddr, "analytics-addr": analyticsAddr, "view-timeout-ms": viewTimeoutMs]
  }

  static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try GatewayApp.build(settings: settings, logger: logger)
  }
}
