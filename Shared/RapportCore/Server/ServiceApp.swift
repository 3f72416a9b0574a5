import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import PostgresNIO
import RapportProtos
import ServiceLifecycle
import Synchronization
import UnixSignals

/// A service process as one `ServiceGroup`: the Postgres pool, outbound gRPC clients, then the
/// application (migrations → listener + workers). SIGTERM drains in reverse order: the server stops
/// taking RPCs (health NOT_SERVING, open streams end), workers stop, clients close, the pool closes.
public final class ServiceApp: Sendable {
  public let config: CommonConfig
  public let logger: Logger
  public let health = HealthState()
  /// Per-method RPC metrics (served on `config.metricsAddress` when set).
  public let metrics = RPCMetrics()
  /// The `GET /metrics` listener, when `config.metricsAddress` is set.
  public let metricsEndpoint: MetricsEndpoint?
  /// The service's database pool; nil for a service without a database.
  public let postgres: Database?
  /// The generic-plan pool (`Pools.genericPlans`), run and stopped with the main pool.
  let genericPlans: Database?
  private let clients: [GRPCClient<HTTP2ClientTransport.Posix>]
  private let application: ApplicationService
  private let group = Mutex<ServiceGroup?>(nil)

  /// - Parameters:
  ///   - schema/migrations: applied before the listener opens.
  ///   - rpcServices: the service's RPCs; the health service is added here.
  ///   - workers: background loops started after migrations; they must end on cancellation.
  public init(
    config: CommonConfig, postgres: Database?, genericPlans: Database? = nil, migrator: Migrator?,
    rpcServices: [any RegistrableRPCService], serviceNames: Set<String>,
    clients: [GRPCClient<HTTP2ClientTransport.Posix>] = [], workers: [any Service] = [],
    notifier: OutboxNotifier? = nil, interceptors: [any ServerInterceptor] = [], callers: CallerPolicy? = nil,
    logger: Logger
  ) {
    self.config = config
    self.logger = logger
    self.postgres = postgres
    self.genericPlans = genericPlans
    self.clients = clients
    for pool in [postgres, genericPlans].compactMap({ $0 }) { metrics.export(pool.queue) }
    var workers = workers
    if postgres != nil, let url = config.databaseURL {
      let probe = DatabaseProbe(url: url, health: health, logger: logger)
      workers.append(ClosureService { try await probe.run() })
      if let postgres {
        workers.append(PoolGauge.periodic(postgres, applicationName: PoolGauge.applicationName(for: config.name), logger: logger))
      }
    }
    if let tls = config.tls { workers.append(tls.reload) }
    if let address = config.healthAddress {
      let probes = GRPCServer(
        transport: HTTP2ServerTransport.Posix(
          address: .ipv4(host: address.host, port: address.port), transportSecurity: .plaintext,
          config: .defaults {
            $0.channelDebuggingCallbacks.onAcceptHTTP2Stream = { channel in
              // grpc-swift-nio-transport calls this on the stream's event loop.
              channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                  StreamGuard(limits: .init(maxMessageBytes: 1024, requestIdleTimeout: .seconds(5))), position: .first)
              }
            }
          }),
        services: [HealthService(state: health, services: serviceNames)])
      workers.append(ClosureService {
        try await withTaskCancellationHandler { try await probes.serve() } onCancel: { probes.beginGracefulShutdown() }
      })
    }
    let metrics = self.metrics
    let endpoint = config.metricsAddress.map { MetricsEndpoint(name: config.name, address: $0, metrics: metrics, logger: logger) }
    if let endpoint { workers.append(endpoint) }
    metricsEndpoint = endpoint
    let limits = StreamGuard.Limits(
      maxMessageBytes: config.maxRequestBytes,
      requestIdleTimeout: .nanoseconds(Int64(config.requestIdleTimeout.nanoseconds)))
    let transport = HTTP2ServerTransport.Posix(
      address: .ipv4(host: config.listen.host, port: config.listen.port),
      transportSecurity: config.tls?.server ?? .plaintext,
      config: .defaults {
        $0.http2.maxConcurrentStreams = config.maxConcurrentStreams
        $0.rpc.maxRequestPayloadSize = config.maxRequestBytes
        // Every stream's first handler: see StreamGuard for what it refuses before gRPC parses a byte.
        $0.channelDebuggingCallbacks.onAcceptHTTP2Stream = { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(StreamGuard(limits: limits), position: .first)
          }
        }
      })
    // Who may call what is only known when peers present certificates (mutual TLS).
    let callerPolicy: [any ServerInterceptor] = config.tls?.verifyClients == true ? callers.map { [$0] } ?? [] : []
    if config.tls == nil { logger.warning("plaintext listener and outbound calls: for development only") }
    let server = GRPCServer(
      transport: transport,
      services: rpcServices + [HealthService(state: health, services: serviceNames)],
      interceptors: RapportTracing.serverInterceptors + [
        ServingInterceptor(logger: logger, metrics: metrics, health: postgres == nil ? nil : health)
      ] + callerPolicy + interceptors + [RequestBounds()])
    self.application = ApplicationService(
      name: config.name, server: server, transport: transport, postgres: postgres, migrator: migrator, workers: workers,
      health: health, notifier: notifier, logger: logger)
  }

  /// The services to run, in dependency order.
  public var services: [any Service] {
    var services: [any Service] = []
    // The pools are the last to stop, when nothing uses them any more: cancel them rather than wait for
    // their graceful shutdown, which postgres-nio 1.33.2 never finishes while connection attempts fail (a
    // SIGTERM during a database outage would otherwise hang the process).
    for pool in [postgres, genericPlans].compactMap({ $0 }) {
      services.append(ClosureService { await cancelWhenGracefulShutdown { await pool.client.run() } })
    }
    services += clients.map(GRPCClientService.init(client:))
    services.append(application)
    return services
  }

  /// The address the server listens on, once it does.
  public func listeningAddress() async throws -> HostPort { try await application.listeningAddress() }

  /// Longest a stop may take once shutdown began: draining RPCs, stopping workers, closing the pool.
  public static let stopLimit: Duration = .seconds(10)

  /// Runs until SIGTERM/SIGINT (or, with `signals: []`, until the task is cancelled or `shutdown()`).
  /// Returns at the latest `stopLimit` after shutdown began, even if a service has not stopped: while
  /// PostgreSQL refuses connections, postgres-nio 1.33.2's pool (and a query waiting on it) was seen
  /// never to finish its shutdown, which would leave a SIGTERMed process hanging until it is killed.
  /// - Parameter alongside: process-wide services that run and stop with this one (the trace exporter).
  public func run(signals: [UnixSignal] = [.sigterm, .sigint], alongside: [any Service] = []) async throws {
    // What is running, for dashboards and upgrade checks: rapport_build_info{service, version} 1.
    metrics.gauge("rapport_build_info", [("service", config.name), ("version", RapportVersion.version), ("commit", RapportVersion.commit)]).record(1)
    let group = ServiceGroup(
      configuration: .init(services: alongside + services, gracefulShutdownSignals: signals, logger: logger))
    self.group.withLock { $0 = group }
    let outcome = FirstResult<Void>()
    let running = Task {
      do {
        try await RPCMetrics.$current.withValue(self.metrics) { try await group.run() }
        outcome.finish(.success(()))
      } catch {
        outcome.finish(.failure(error))
      }
    }
    let logger = self.logger
    application.onShutdown {
      Task {
        try? await Task.sleep(for: Self.stopLimit)
        if outcome.finish(.success(())) {
          logger.error("not stopped \(Self.stopLimit) after shutdown began; leaving the rest behind")
        }
      }
    }
    try await withTaskCancellationHandler {
      try await outcome.value()
    } onCancel: {
      running.cancel()
    }
  }

  /// Applies the service's migrations and returns (`rapport-<service> migrate`): what the process also
  /// does at start, for operators who migrate before they roll out (docs/OPERATIONS.md, upgrades).
  public func migrate() async throws {
    guard let postgres, let migrator = application.migrator else { return }
    try await withThrowingTaskGroup(of: Void.self) { group in
      group.addTask { await postgres.client.run() }
      try await application.migrate(postgres, migrator)
      group.cancelAll()
    }
  }

  /// Drains and stops the process as SIGTERM would.
  public func shutdown() async {
    await group.withLock { $0 }?.triggerGracefulShutdown()
  }
}

/// Migrations, then the gRPC server and the workers side by side.
final class ApplicationService: Service {
  let name: String
  let server: GRPCServer<HTTP2ServerTransport.Posix>
  let transport: HTTP2ServerTransport.Posix
  let postgres: Database?
  let migrator: Migrator?
  let workers: [any Service]
  let health: HealthState
  let notifier: OutboxNotifier?
  let logger: Logger
  private let shutdownHandlers = Mutex<[@Sendable () -> Void]>([])

  /// Calls `handler` when graceful shutdown begins.
  func onShutdown(_ handler: @escaping @Sendable () -> Void) {
    shutdownHandlers.withLock { $0.append(handler) }
  }

  init(
    name: String, server: GRPCServer<HTTP2ServerTransport.Posix>,
    transport: HTTP2ServerTransport.Posix, postgres: Database?,
    migrator: Migrator?, workers: [any Service], health: HealthState, notifier: OutboxNotifier?,
    logger: Logger
  ) {
    self.name = name
    self.server = server
    self.transport = transport
    self.postgres = postgres
    self.migrator = migrator
    self.workers = workers
    self.health = health
    self.notifier = notifier
    self.logger = logger
  }

  func listeningAddress() async throws -> HostPort {
    guard let address = try await transport.listeningAddress.ipv4 else {
      throw RPCFailure.internal("server is not listening on IPv4")
    }
    return HostPort(host: address.host, port: address.port)
  }

  func run() async throws {
    if let postgres, let migrator { try await migrate(postgres, migrator) }
    try await withGracefulShutdownHandler {
      try await withThrowingDiscardingTaskGroup { group in
        group.addTask {
          try await self.server.serve()
          self.logger.debug("gRPC server stopped")
        }
        group.addTask {
          // serve() reports a failed bind itself; this only announces success.
          if let address = try? await self.listeningAddress() {
            self.logger.info("listening", metadata: ["address": "\(address)"])
            FileHandle.standardOutput.write(Data("rapport-\(self.name) listening on \(address)\n".utf8))
          }
        }
        for worker in workers {
          group.addTask {
            try await cancelWhenGracefulShutdown { try await worker.run() }
            self.logger.debug("worker stopped", metadata: ["worker": "\(type(of: worker))"])
          }
        }
      }
    } onGracefulShutdown: {
      self.logger.info("draining")
      for handler in self.shutdownHandlers.withLock({ $0 }) { handler() }
      self.health.beginDraining()
      self.notifier?.close()
      self.server.beginGracefulShutdown()
    }
  }

  /// Applies migrations, retrying while the database is not reachable yet (up to 60 s).
  func migrate(_ postgres: Database, _ migrator: Migrator) async throws {
    var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(3))
    let deadline = ContinuousClock.now + .seconds(60)
    while true {
      do {
        try await migrator.apply(on: postgres, logger: logger)
        return
      } catch let error as PSQLError where error.code == .server {
        throw error
      } catch {
        guard ContinuousClock.now < deadline else { throw error }
        logger.warning("database not reachable yet; retrying migrations", metadata: ["error": "\(error)"])
        try await Task.sleep(for: backoff.next())
      }
    }
  }
}
