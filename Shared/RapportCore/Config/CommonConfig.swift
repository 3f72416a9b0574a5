import GRPCNIOTransportHTTP2
import Logging

/// What every service process needs: where to listen, which database, and its limits.
public struct CommonConfig: Sendable {
  /// Short service name, e.g. `customer`; also the log label.
  public var name: String
  /// Address the gRPC server binds; port 0 picks a free port (printed at start-up).
  public var listen: HostPort
  /// `postgres://user[:password]@host[:port]/database`; nil for a service without a database.
  public var databaseURL: DatabaseURL?
  /// Most connections the service's pool opens.
  public var maxDatabaseConnections: Int
  /// HTTP/2 streams one client connection may have open at once.
  public var maxConcurrentStreams: Int
  /// Largest request message accepted, in bytes (larger ones: RESOURCE_EXHAUSTED).
  public var maxRequestBytes: Int
  /// How long a request that is not yet complete may send nothing before it is ended.
  public var requestIdleTimeout: Duration
  /// Where `GET /metrics` is served; nil for none.
  public var metricsAddress: HostPort?
  /// TLS on the listener and on outbound calls; nil: plaintext (development only).
  public var tls: ProcessTLS?
  /// A second, plaintext listener that serves only `grpc.health.v1.Health`, for probes that cannot
  /// present a client certificate (Kubernetes' gRPC probes); nil for none.
  public var healthAddress: HostPort?

  /// How calls to other services are secured: mutual TLS with this process's certificate, or plaintext.
  public var outbound: HTTP2ClientTransport.Posix.TransportSecurity { tls?.client ?? .plaintext }

  public init(
    name: String, listen: HostPort, databaseURL: DatabaseURL?, maxDatabaseConnections: Int = 10,
    maxConcurrentStreams: Int = 256, maxRequestBytes: Int = 4 * 1024 * 1024,
    requestIdleTimeout: Duration = .seconds(30), metricsAddress: HostPort? = nil, tls: ProcessTLS? = nil
  ) {
    self.name = name
    self.listen = listen
    self.databaseURL = databaseURL
    self.maxDatabaseConnections = maxDatabaseConnections
    self.maxConcurrentStreams = maxConcurrentStreams
    self.maxRequestBytes = maxRequestBytes
    self.requestIdleTimeout = requestIdleTimeout
    self.metricsAddress = metricsAddress
    self.tls = tls
  }

  /// Reads `addr`, `database-url`, `db-pool-size`, `max-streams`, `max-request-bytes`,
  /// `request-idle-timeout-ms`, `metrics-addr`, `health-addr` and the TLS files `tls-cert`, `tls-key`, `tls-ca`
  /// (all three, or none with `plaintext` for development), `tls-client-auth` (`required`/`none`; the default is `defaultClientAuth`) and
  /// `tls-reload-interval-ms` (default 10000) for a service (see `CommonOptions`).
  public init(
    settings: Settings, name: String, defaultPort: Int, needsDatabase: Bool = true, defaultClientAuth: Bool = true
  ) throws {
    let url = settings.string("database-url")
    if needsDatabase && url == nil {
      throw ConfigurationError(
        "no database: pass --database-url or set RAPPORT_\(settings.service)_DATABASE_URL")
    }
    self.init(
      name: name,
      listen: try settings.address("addr", default: "127.0.0.1:\(defaultPort)"),
      databaseURL: try url.map(DatabaseURL.init(parsing:)),
      maxDatabaseConnections: try settings.int("db-pool-size", default: 10),
      maxConcurrentStreams: try settings.int("max-streams", default: 256),
      maxRequestBytes: try settings.int("max-request-bytes", default: 4 * 1024 * 1024),
      requestIdleTimeout: try settings.milliseconds("request-idle-timeout-ms", default: 30_000),
      metricsAddress: try settings.string("metrics-addr").map(HostPort.init(parsing:)),
      tls: try Self.tls(settings: settings, name: name, defaultClientAuth: defaultClientAuth)
    )
    healthAddress = try settings.string("health-addr").map(HostPort.init(parsing:))
  }

  static func tls(settings: Settings, name: String, defaultClientAuth: Bool) throws -> ProcessTLS? {
    let paths = ["tls-cert", "tls-key", "tls-ca"].map { settings.string($0) }
    // Secure by default: a service listens in plaintext (and trusts every caller) only when told to.
    let plaintext = try settings.bool("plaintext", default: false)
    if paths.allSatisfy({ $0 == nil }) {
      guard plaintext else {
        throw ConfigurationError(
          "no TLS: pass --tls-cert, --tls-key and --tls-ca, or --plaintext for development (every caller is then trusted)")
      }
      return nil
    }
    if plaintext { throw ConfigurationError("--plaintext and --tls-cert, --tls-key, --tls-ca exclude each other") }
    guard let certificate = paths[0], let key = paths[1], let ca = paths[2] else {
      throw ConfigurationError("TLS needs all of --tls-cert, --tls-key and --tls-ca")
    }
    let verifyClients: Bool
    switch settings.string("tls-client-auth", default: defaultClientAuth ? "required" : "none") {
    case "required": verifyClients = true
    case "none": verifyClients = false
    default: throw ConfigurationError("tls-client-auth must be required or none")
    }
    return try ProcessTLS(
      files: TLSFiles(certificate: certificate, privateKey: key, trustRoots: ca), verifyClients: verifyClients,
      reloadInterval: try settings.milliseconds("tls-reload-interval-ms", default: 10_000),
      logger: Logger(label: "rapport.\(name)"))
  }
}
