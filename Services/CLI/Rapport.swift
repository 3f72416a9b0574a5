import RapportCore
import ArgumentParser

/// The operator/developer CLI.
@main
struct Rapport: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "rapport",
    abstract: "Run, inspect and measure a Rapport installation.",
    version: RapportVersion.description,
    subcommands: [
      Up.self, Certs.self, View.self, StatusCommand.self, Import.self, Seed.self, Segments.self, Partners.self, Keys.self, Audit.self, Bench.self, BenchCustomers.self, BenchAnalytics.self,
      BenchPartners.self,
    ])
}
