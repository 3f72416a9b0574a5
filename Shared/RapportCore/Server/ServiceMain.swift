import Foundation
import Logging
import OTel
import CMalloc
import ServiceLifecycle

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
    // Every log line of a traced request carries its trace_id and span_id (empty providers otherwise).
    let metadata = Logger.MetadataProvider.multiplex([.requestID, OTel.makeLoggingMetadataProvider()]) ?? .requestID
    if format == "json" {
      LoggingSystem.bootstrap({ _, provider in JSONLogHandler(service: name, metadataProvider: provider) }, metadataProvider: metadata)
    } else if format != "text" {
      FileHandle.standardError.write(Data("rapport-\(name): log-format must be text or json\n".utf8))
      exit(64)
    }
    var logger = Logger(label: "rapport-\(name)", metadataProvider: metadata)
    logger.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["RAPPORT_LOG_LEVEL"] ?? "info") ?? .info
    do {
      var settings = Settings(service: name, flags: flags)
      // `migrate` listens nowhere and calls no service: it needs no TLS files.
      if migrateOnly, ["tls-cert", "tls-key", "tls-ca"].allSatisfy({ settings.string($0) == nil }) {
        settings = Settings(service: name, flags: flags.merging(["plaintext": "true"]) { $1 })
      }
      try limitMallocArenas(settings)
      let trimmer = try mallocTrimmer(settings, logger: logger)
      let exporter = try migrateOnly ? nil : settings.string("otlp-endpoint").map { try startTracing(name, endpoint: $0) }
      let app = try build(settings, logger)
      if migrateOnly {
        try await app.migrate()
        print("rapport-\(name): migrations applied")
      } else {
        try await app.run(alongside: [exporter, trimmer].compactMap { $0 })
      }
      exit(0)
    } catch {
      logger.critical("rapport-\(name) stopped: \(error)")
      FileHandle.standardError.write(Data("rapport-\(name): \(error)\n".utf8))
      exit(1)
    }
  }

  /// glibc gives each thread that finds the arenas busy a new one, up to 8 per core, and each keeps the
  /// memory it once held: a service's event-loop, concurrency and database threads then hold more
  /// resident memory than they use. `--malloc-arena-max` (default 2) caps them before any of those
  /// threads start, as `MALLOC_ARENA_MAX` would.
  static func limitMallocArenas(_ settings: Settings) throws {
    let arenas = try settings.int("malloc-arena-max", default: 2)
    guard (0...64).contains(arenas) else {
      throw ConfigurationError("malloc-arena-max must be from 0 to 64, got \(arenas)")
    }
    if arenas > 0 { _ = rapport_malloc_arena_max(Int32(arenas)) }
  }

  /// glibc returns freed memory to the system by itself only from the top of a heap, so after a burst a
  /// service keeps the pages it freed in the middle resident. `--malloc-trim-interval-ms` (default
  /// 10000; 0: never) runs `malloc_trim(0)` that often: it gives back every arena's free pages.
  static func mallocTrimmer(_ settings: Settings, logger: Logger) throws -> (any Service)? {
    let interval = try settings.int("malloc-trim-interval-ms", default: 10_000)
    guard (0...3_600_000).contains(interval) else {
      throw ConfigurationError("malloc-trim-interval-ms must be from 0 to 3600000, got \(interval)")
    }
    guard interval > 0 else { return nil }
    let trim = Periodic("malloc trim", every: .milliseconds(interval), logger: logger) { _ = rapport_malloc_trim() }
    return ClosureService { try await cancelWhenGracefulShutdown { try await trim.run() } }
  }

  /// Bootstraps swift-otel's tracer with an OTLP/gRPC exporter to `endpoint` (traces only: metrics stay
  /// on Prometheus, logs on standard error) and turns on Rapport's tracing interceptors. Returns the
  /// exporter's service, which flushes the last spans when the process stops.
  static func startTracing(_ name: String, endpoint: String) throws -> any Service {
    var configuration = OTel.Configuration.default
    configuration.serviceName = "rapport-\(name)"
    configuration.resourceAttributes["service.version"] = RapportVersion.version
    configuration.resourceAttributes["rapport.commit"] = RapportVersion.commit
    configuration.metrics.enabled = false
    configuration.logs.enabled = false
    configuration.traces.enabled = true
    configuration.traces.exporter = .otlp
    configuration.traces.otlpExporter.protocol = .grpc
    configuration.traces.otlpExporter.endpoint = endpoint
    let service = try OTel.bootstrap(configuration: configuration)
    RapportTracing.enable()
    return service
  }
}
