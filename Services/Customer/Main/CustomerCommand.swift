import ArgumentParser
import CustomerService
import Logging
import RapportCore

/// `rapport-customer`: parses the command line (unknown flags are refused; `--help`, `--version`) and
/// runs the service that `CustomerApp.build` assembles.
@main
struct CustomerCommand: ServiceCommand {
  static let service = "customer"
  static let configuration = CommandConfiguration.service(service, abstract: "The customer service: one record per customer across channels.")

  @OptionGroup var common: CommonOptions

  static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    try CustomerApp.build(settings: settings, logger: logger)
  }
}
