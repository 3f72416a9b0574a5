import ArgumentParser
import Logging

import RapportBuildInfo

/// Rapport's version and commit, reported by `--version` of every executable.
public enum RapportVersion {
  public static let version = BuildInfo.version
  public static let commit = BuildInfo.commit
  /// What `--version` prints: `0.11.0 (commit 1a2b3c4d5e6f)`.
  public static let description = BuildInfo.description
}

/// The flags every service executable takes. Each may also come from `RAPPORT_<SERVICE>_<NAME>` or
/// `RAPPORT_<NAME>` (the flag wins).
public struct CommonOptions: ParsableArguments {
  @Argument(help: "migrate: apply the service's database migrations and exit (default: serve).")
  var action: Action?
  @Option(help: "Address to listen on, host:port (default 127.0.0.1 and the service's port).")
  var addr: String?
  @Option(name: .customLong("database-url"), help: "postgres://user[:password]@host[:port]/database[?sslmode=…]")
  var databaseURL: String?
  @Option(name: .customLong("db-pool-size"), help: "Most database connections (default 10).")
  var dbPoolSize: String?
  @Option(name: .customLong("max-streams"), help: "Concurrent HTTP/2 streams per client connection (default 256).")
  var maxStreams: String?
  @Option(name: .customLong("max-request-bytes"), help: "Largest request message (default 4194304).")
  var maxRequestBytes: String?
  @Option(
    name: .customLong("request-idle-timeout-ms"),
    help: "End a request that sends nothing for this long before it is complete (default 30000).")
  var requestIdleTimeoutMs: String?
  @Option(name: .customLong("metrics-addr"), help: "Serve GET /metrics on host:port (default: off).")
  var metricsAddr: String?
  @Option(name: .customLong("log-format"), help: "text (default) or json: one JSON object per line with time, level, service, message, request-id and, in a traced request, trace_id and span_id.")
  var logFormat: String?
  @Option(name: .customLong("health-addr"), help: "Also serve grpc.health.v1.Health alone, in plaintext, on host:port (for probes that cannot do mutual TLS; default: off).")
  var healthAddr: String?
  @Option(name: .customLong("tls-cert"), help: "PEM certificate of this service (with --tls-key and --tls-ca: TLS on the listener and mutual TLS to other services; re-read on SIGHUP and every --tls-reload-interval-ms). Required unless --plaintext.")
  var tlsCert: String?
  @Option(name: .customLong("tls-key"), help: "PEM private key of --tls-cert.")
  var tlsKey: String?
  @Option(name: .customLong("tls-ca"), help: "PEM certificate of the CA that signs the other services' certificates.")
  var tlsCA: String?
  @Option(name: .customLong("tls-client-auth"), help: "required: callers must present a certificate from --tls-ca (default, except on the gateway); none: they need not.")
  var tlsClientAuth: String?
  @Flag(name: .customLong("plaintext"), help: "Development only: listen and call other services without TLS, trusting every caller (RAPPORT_PLAINTEXT=true does the same). Without it the service needs --tls-cert, --tls-key and --tls-ca.")
  var plaintext = false
  @Option(name: .customLong("tls-reload-interval-ms"), help: "How often the certificate and key files are re-read (default 10000).")
  var tlsReloadIntervalMs: String?
  @Option(name: .customLong("otlp-endpoint"), help: "Export traces by OTLP/gRPC to this collector, e.g. http://127.0.0.1:4317 (default: no tracing). The OTEL_* variables of the OpenTelemetry specification refine it.")
  var otlpEndpoint: String?
  @Option(name: .customLong("malloc-arena-max"), help: "Most glibc malloc arenas (default 2; 0: glibc's own limit, 8 per core).")
  var mallocArenaMax: String?
  @Option(name: .customLong("malloc-trim-interval-ms"), help: "How often freed malloc memory is returned to the system (default 10000; 0: never, as glibc does by itself only at a heap's top).")
  var mallocTrimIntervalMs: String?

  public init() {}

  /// What the executable does besides serving.
  public enum Action: String, ExpressibleByArgument, Sendable { case migrate }

  /// The given flags by setting name.
  public var flags: [String: String] {
    [
      "addr": addr, "database-url": databaseURL, "db-pool-size": dbPoolSize, "max-streams": maxStreams,
      "max-request-bytes": maxRequestBytes, "request-idle-timeout-ms": requestIdleTimeoutMs,
      "metrics-addr": metricsAddr, "health-addr": healthAddr, "log-format": logFormat, "tls-cert": tlsCert, "tls-key": tlsKey, "tls-ca": tlsCA,
      "tls-client-auth": tlsClientAuth, "tls-reload-interval-ms": tlsReloadIntervalMs,
      "plaintext": plaintext ? "true" : nil, "otlp-endpoint": otlpEndpoint, "malloc-arena-max": mallocArenaMax, "malloc-trim-interval-ms": mallocTrimIntervalMs,
    ].compactMapValues { $0 }
  }
}

extension CommandConfiguration {
  /// The configuration of a service executable `rapport-<name>`.
  public static func service(_ name: String, abstract: String) -> CommandConfiguration {
    CommandConfiguration(
      commandName: "rapport-\(name)", abstract: abstract,
      discussion: """
        Every option can also be set as an environment variable: RAPPORT_\(name.uppercased())_<NAME> or \
        RAPPORT_<NAME>, with NAME the option in upper case and '_' for '-' (for example \
        RAPPORT_\(name.uppercased())_DATABASE_URL). Log level: RAPPORT_LOG_LEVEL (default info).
        """,
      version: RapportVersion.description)
  }
}

/// A service executable's command: its options, and how its process is built from the settings they give.
/// `run()` reads the settings (flags first, then the environment) and runs the process.
public protocol ServiceCommand: AsyncParsableCommand {
  /// Short service name, e.g. `order`.
  static var service: String { get }
  var common: CommonOptions { get }
  /// The service's own options by setting name (nil when not given).
  var ownFlags: [String: String?] { get }
  static func build(settings: Settings, logger: Logger) throws -> ServiceApp
}

extension ServiceCommand {
  public var ownFlags: [String: String?] { [:] }

  public func run() async throws {
    let flags = common.flags.merging(ownFlags.compactMapValues { $0 }) { $1 }
    await ServiceMain.run(Self.service, flags: flags, migrateOnly: common.action == .migrate, build: Self.build)
  }
}
