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
  @Option(name: .customLong("partner-auth"), help: "required (default): partner RPCs need an API key, and the gateway needs --database-url; off (development only): a call without a key is served, one with a key is checked. The admin service always needs an admin key.") var partnerAuth: String?
  @Option(name: .customLong("admin-key-file"), help: "When no admin key exists yet, create one at start and write it to this file (mode 0600) for the operator to read once and delete.") var adminKeyFile: String?
  @Option(name: .customLong("key-rate"), help: "Requests per second of keys created without their own (default 50).") var keyRate: String?
  @Option(name: .customLong("key-burst"), help: "Burst of keys created without their own (default 100).") var keyBurst: String?
  @Option(name: .customLong("audit-retention-days"), help: "Audit entries older than this are deleted (default 90).") var auditRetentionDays: String?
  @Option(name: .customLong("hidden-row-floor-ms"), help: "A key bound to companies gets NOT_FOUND (or an empty page for a customer outside its binding) no sooner than this after its call began, so timing does not tell hidden rows from missing ones (default 50; 0: off).") var hiddenRowFloorMs: String?

  var ownFlags: [String: String?] {
    [
      "customer-addr": customerAddr, "order-addr": orderAddr, "support-addr": supportAddr, "analytics-addr": analyticsAddr,
      "view-timeout-ms": viewTimeoutMs, "partner-auth": partnerAuth, "admin-key-file": adminKeyFile, "key-rate": keyRate,
      "key-burst": keyBurst, "audit-retention-days": auditRetentionDays, "hidden-row-floor-ms": hiddenRowFloorMs,
    ]
  }

  static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try GatewayApp.build(settings: settings, logger: logger)
  }
}
