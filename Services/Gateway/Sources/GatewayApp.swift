import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportCore
import RapportProtos
import ServiceLifecycle

/// Builds the gateway process; `main` and the tests both call this.
public enum GatewayApp {
  public static let defaultPort = 50050

  /// Reads the common settings plus the four service addresses, `view-timeout-ms` (default budget of a
  /// view when the caller sends no deadline; also the most a view may take) and the partner settings
  /// (`partner-auth`, `admin-key-file`, `key-rate`, `key-burst`, `audit-retention-days`,
  /// `hidden-row-floor-ms`). Partner auth is required unless `partner-auth off` (development), and then
  /// the database (`database-url`, where keys live) is too; with auth off and no database the gateway
  /// serves views and no admin service.
  public static func build(settings: Settings, logger: Logger) throws -> ServiceApp {
    guard let auth = PartnerOptions.Auth(rawValue: settings.string("partner-auth", default: "required")) else {
      throw ConfigurationError("partner-auth must be required or off")
    }
    return try build(
      config: CommonConfig(
        settings: settings, name: "gateway", defaultPort: defaultPort, needsDatabase: false, defaultClientAuth: false),
      upstreams: Upstreams(
        customer: settings.address("customer-addr", default: "127.0.0.1:50051"),
        order: settings.address("order-addr", default: "127.0.0.1:50052"),
        support: settings.address("support-addr", default: "127.0.0.1:50053"),
        analytics: settings.address("analytics-addr", default: "127.0.0.1:50054")),
      viewTimeout: settings.milliseconds("view-timeout-ms", default: 2000),
      partners: PartnerOptions(
        auth: auth, adminKeyFile: settings.string("admin-key-file"),
        defaultRate: try settings.int("key-rate", default: 50), defaultBurst: try settings.int("key-burst", default: 100),
        auditRetention: .seconds(86_400 * (try settings.int("audit-retention-days", default: 90))),
        hiddenRowFloor: try settings.milliseconds("hidden-row-floor-ms", default: 50)),
      logger: logger)
  }

  /// The addresses of the services the gateway composes.
  public struct Upstreams: Sendable {
    public var customer, order, support, analytics: HostPort
    public init(customer: HostPort, order: HostPort, support: HostPort, analytics: HostPort) {
      (self.customer, self.order, self.support, self.analytics) = (customer, order, support, analytics)
    }
  }

  /// How partners are checked (see docs/PARTNERS.md).
  public struct PartnerOptions: Sendable {
    public enum Auth: String, Sendable { case required, off }
    public var auth: Auth
    public var adminKeyFile: String?
    public var defaultRate: Int
    public var defaultBurst: Int
    /// Audit entries older than this are deleted.
    public var auditRetention: Duration
    /// How long a bound key's "nothing there" takes at least (`HiddenRowFloor`); zero: not held.
    public var hiddenRowFloor: Duration

    public init(
      auth: Auth = .off, adminKeyFile: String? = nil, defaultRate: Int = 50, defaultBurst: Int = 100,
      auditRetention: Duration = .seconds(90 * 86_400), hiddenRowFloor: Duration = .milliseconds(50)
    ) {
      (self.auth, self.adminKeyFile, self.defaultRate, self.defaultBurst) = (auth, adminKeyFile, defaultRate, defaultBurst)
      self.auditRetention = auditRetention
      self.hiddenRowFloor = hiddenRowFloor
    }
  }

  public static func build(
    config: CommonConfig, upstreams: Upstreams, viewTimeout: Duration = .seconds(2),
    partners: PartnerOptions = PartnerOptions(), logger: Logger
  ) throws -> ServiceApp {
    let clients = try [upstreams.customer, upstreams.order, upstreams.support, upstreams.analytics]
      .map { try GRPCClientService.client(to: $0, config: config) }
    let customers = Rapport_Customer_V1_CustomerService.Client(wrapping: clients[0])
    let orders = Rapport_Order_V1_OrderService.Client(wrapping: clients[1])
    let support = Rapport_Support_V1_SupportService.Client(wrapping: clients[2])
    let analytics = Rapport_Analytics_V1_AnalyticsService.Client(wrapping: clients[3])
    let rpcs = GatewayRPCs(
      customers: customers, orders: orders, support: support, analytics: analytics,
      reads: ViewReads(customers: customers, orders: orders, support: support, analytics: analytics),
      defaultBudget: viewTimeout, maximumBudget: max(viewTimeout, .seconds(10)), logger: logger)
    let warm = ClosureService { await warmUp(clients, logger: logger) }
    guard config.databaseURL != nil else {
      guard partners.auth == .off else { throw ConfigurationError("partner-auth required needs --database-url") }
      return ServiceApp(
        config: config, postgres: nil, migrator: nil, rpcServices: [rpcs],
        serviceNames: ["rapport.gateway.v1.PartnerGateway"], clients: clients, workers: [warm], logger: logger)
    }
    let postgres = try ServiceApp.makePostgres(config: config, logger: logger)
    let store = PartnerStore(client: postgres, logger: logger)
    let verifier = KeyVerifier(store: store)
    let audit = AuditLog(store: store)
    return try .publishing(
      config: config, schema: GatewayMigrations.schema, migrations: GatewayMigrations.all,
      serviceName: "rapport.gateway.v1.PartnerGateway", otherServiceNames: ["rapport.gateway.v1.PartnerAdmin"],
      clients: clients, postgres: postgres,
      interceptors: [
        PartnerAuth(verifier: verifier, mode: partners.auth == .required ? .required : .off, audit: audit),
        HiddenRowFloor(floor: partners.hiddenRowFloor),
      ],
      logger: logger,
      workers: { _ in
        var workers: [any Service] = [
          warm, Periodic("key usage", every: .seconds(60), logger: logger) { try await verifier.flushUsage() },
          Periodic("audit flush", every: .milliseconds(500), logger: logger) { try await audit.flush(logger: logger) },
          Periodic("audit retention", every: .seconds(3600), logger: logger) {
            try await store.pruneAudit(before: Date().addingTimeInterval(-Double(partners.auditRetention.components.seconds)))
          },
        ]
        if let file = partners.adminKeyFile {
          workers.append(ClosureService {
            do { try await firstAdminKey(store, file: file, partners: partners, logger: logger) } catch {
              logger.error("could not create the first admin key", metadata: ["error": "\(error)"])
            }
          })
        }
        return workers
      },
      rpcs: { _ in
        [rpcs, AdminRPCs(store: store, defaultRate: partners.defaultRate, defaultBurst: partners.defaultBurst, logger: logger)]
      })
  }

  /// When no usable admin key exists, creates the partner "operators" with one admin key and writes the
  /// key to `file` (created with mode 0600; the operator reads it once and deletes it). Nothing else is
  /// ever written in clear.
  static func firstAdminKey(_ store: PartnerStore, file: String, partners: PartnerOptions, logger: Logger) async throws {
    guard try await !store.hasAdminKey(at: Date()) else { return }
    let operators = try await store.createPartner(name: "operators", contact: "", at: Date())
    guard let partnerID = UUID(uuidString: operators.id) else { throw RPCFailure.internal("partner id is not a UUID") }
    let key = KeyRecord(
      id: UUID(), partnerID: partnerID, secretHash: [], scopes: [Scope.admin.rawValue],
      companyIDs: [], ratePerSecond: partners.defaultRate, burst: partners.defaultBurst, expiresAt: nil, revokedAt: nil,
      createdAt: Date(), lastUsedAt: nil)
    let (_, secret) = try await AdminRPCs.issue(key, in: store)
    // Written under a temporary name and renamed: a reader never sees a partly written key.
    let partial = file + ".partial"
    let descriptor = open(partial, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard descriptor >= 0 else { throw ConfigurationError("cannot write the first admin key to \(file)") }
    let line = secret + "\n"
    let written = line.withCString { write(descriptor, $0, strlen($0)) }
    close(descriptor)
    guard written == line.utf8.count, rename(partial, file) == 0 else {
      throw ConfigurationError("cannot write the first admin key to \(file)")
    }
    logger.notice("first admin key created", metadata: ["file": "\(file)", "key": "\(KeySecret.displayPrefix(key.id))"])
  }

  /// Opens the connection to every upstream at start (one health check each, answered or not), so the
  /// first views do not pay for four TCP and HTTP/2 handshakes.
  static func warmUp(_ clients: [GRPCClient<HTTP2ClientTransport.Posix>], logger: Logger) async {
    var callOptions = CallOptions.defaults
    callOptions.timeout = .seconds(2)
    callOptions.waitForReady = true
    let options = callOptions
    await withTaskGroup(of: Void.self) { group in
      for client in clients {
        group.addTask {
          let health = Grpc_Health_V1_Health.Client(wrapping: client)
          do { _ = try await health.check(.init(), options: options) } catch {
            logger.debug("upstream not answering yet", metadata: ["error": "\(type(of: error))"])
          }
        }
      }
    }
  }
}
