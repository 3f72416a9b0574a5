import Foundation
import Logging

/// The body of every service's `run()`: build, run, and on any error log it and exit non-zero (an
/// uncaught error at top level would end the process with SIGILL).
public enum ServiceMain {
  /// - Parameter flags: the options given on the command line, by setting name.
  /// - Parameter migrateOnly: apply the service's migrations and exit instead of serving.
  public static func run(
    _ name: String, flags: [String: String], migrateOnly: Bool = false, build: (Settings, Logger) throws -> ServiceApp
  ) async -> Never {
    let format = flags["log-format"] ?? ProcessInfo.processInfo.environment["RAPPORT_\(name.uppercased())_LOG_FORMAT"]
      ?? ProcessInfo.processInfo.environment["RAPPORT_LOG_FORMAT"] ?? "text"
    if format == "json" {
      LoggingSystem.bootstrap({ _, provider in JSONLogHandler(service: name, metadataProvider: provider) }, metadataProvider: .requestID)
    } else if format != "text" {
      FileHandle.standardError.write(Data("rapport-\(name): log-format must be text or json\n".utf8))
      exit(64)
    }
    var logger = Logger(label: "rapport-\(name)", metadataProvider: .requestID)
    logger.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["RAPPORT_LOG_LEVEL"] ?? "info") ?? .info
    do {
      let app = try build(Settings(service: name, flags: flags), logger)
      if migrateOnly {
        try await app.migrate()
        print("rapport-\(name): migrations applied")
      } else {
        try await app.run()
      }
      exit(0)
    } catch {
      logger.critical("rapport-\(name) stopped: \(error)")
      FileHandle.standardError.write(Data("rapport-\(name): \(error)\n".utf8))
      exit(1)
    }
  }
}
