import RapportCore
import Foundation
import NIOCore
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportProtos
import Synchronization

/// The five service executables started as child processes against one database: what `rapport up` and
/// `rapport bench` run, and what the end-to-end tests start.
public final class Stack: Sendable {
  /// Start order: each service only needs the ones before it.
  public static let order = ["customer", "order", "support", "analytics", "gateway"]
  public static let defaultPorts = ["gateway": 50050, "customer": 50051, "order": 50052, "support": 50053, "analytics": 50054]
  /// Where `rapport up` serves each service's `GET /metrics`.
  public static let defaultMetricsPorts = [
    "gateway": 9450, "customer": 9451, "order": 9452, "support": 9453, "analytics": 9454,
  ]

  public let postgres: LocalPostgres?
  /// The superuser URL of the database the services use.
  public let databaseURL: DatabaseURL
  private let dataDirectory: String
  private let settings: [String: [String: String]]
  /// Where the suite's certificates are (`CertificateAuthority.suite`); nil: plaintext.
  public let tlsDirectory: String?
  /// How a client of the suite connects: mutual TLS as `operator`, or plaintext.
  public var clientSecurity: HTTP2ClientTransport.Posix.TransportSecurity { Self.clientSecurity(tlsDirectory) }
  private let entries: Mutex<[(name: String, process: ChildProcess, address: HostPort)]>

  /// The running services in start order (a restarted service appears with its new process).
  public var processes: [(name: String, process: ChildProcess, address: HostPort)] { entries.withLock { $0 } }

  private init(
    postgres: LocalPostgres?, databaseURL: DatabaseURL, dataDirectory: String,
    settings: [String: [String: String]], tlsDirectory: String?, processes: [(String, ChildProcess, HostPort)]
  ) {
    self.settings = settings
    self.tlsDirectory = tlsDirectory
    self.postgres = postgres
    self.databaseURL = databaseURL
    self.dataDirectory = dataDirectory
    self.entries = Mutex(processes.map { (name: $0.0, process: $0.1, address: $0.2) })
  }

  public func address(_ name: String) -> HostPort { processes.first { $0.name == name }!.address }

  /// Starts the embedded database (unless `databaseURL` is given) and the five services, each with its
  /// `settings` (see `launch`); waits until each reports SERVING. With `tls`, a new CA and certificates
  /// are written to `<dataDirectory>/tls` (kept when they exist), every listener and call uses them, and
  /// the gateway requires partner keys (its default). Without, the suite runs in development mode:
  /// plaintext and partner auth off (unless `settings` give `plaintext` or `partner-auth`).
  public static func start(
    dataDirectory: String, databaseURL given: DatabaseURL?, ports: [String: Int],
    settings: [String: [String: String]] = [:], tls: Bool = false, logger: Logger, say: (String) -> Void = { _ in }
  ) async throws -> Stack {
    let tlsDirectory = tls ? "\(dataDirectory)/tls" : nil
    if let tlsDirectory, !FileManager.default.fileExists(atPath: "\(tlsDirectory)/ca.pem") {
      try CertificateAuthority.suite(in: tlsDirectory)
      say("TLS: CA and certificates in \(tlsDirectory) (clients use operator.pem/operator.key, trust ca.pem)")
    }
    var postgres: LocalPostgres?
    let server: DatabaseURL
    if let given {
      server = given
    } else {
      let directory = "\(dataDirectory)/postgres"
      let local = try await Shell.onOwnThread { try LocalPostgres.start(directory: directory) }
      say("PostgreSQL \(local.adminURL.host):\(local.port), data in \(local.directory)")
      postgres = local
      server = local.adminURL.with(database: "rapport")
    }
    try await Bootstrap.prepare(database: server.database, server: server, logger: logger)
    var started: [(String, ChildProcess, HostPort)] = []
    do {
      for name in order {
        let (process, address) = try await launch(
          name, port: ports[name] ?? 0, database: server, upstream: started.map { ($0.0, $0.2) },
          dataDirectory: dataDirectory, settings: settings[name] ?? [:], tlsDirectory: tlsDirectory)
        started.append((name, process, address))
        say("  \(name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(address)  (log: \(dataDirectory)/logs/\(name).log)")
      }
    } catch {
      for (_, process, _) in started.reversed() { await process.stop() }
      try? postgres?.stop()
      throw error
    }
    return Stack(
      postgres: postgres, databaseURL: server, dataDirectory: dataDirectory, settings: settings, tlsDirectory: tlsDirectory,
      processes: started)
  }

  /// Starts one service executable against `database` (its own role), told where its `upstream` services
  /// listen and given `settings` (kebab-case names, passed as `RAPPORT_<SERVICE>_<NAME>`); waits until it
  /// reports SERVING. A process that does not get there is stopped. With `tlsDirectory`, the service uses
  /// its certificate from there (`TLSFiles(directory:name:)`).
  /// NIO's own setting for the number of event-loop threads of a process's shared group
  /// (`NIOSingletons.groupLoopCountSuggestion`; by default one per core, a container's CPU quota counted).
  public static let eventLoopVariable = "NIO_SINGLETON_GROUP_LOOP_COUNT"

  /// Event-loop threads for each service when the whole suite shares one machine: its share of the cores,
  /// at least 1. With NIO's default every process ran one loop per core, so on 2 cores the five services
  /// ran 10 loop threads, and a call's work (its HTTP/2 connection, its database connection) crossed
  /// between them; with one loop each, reads and checks under h2load were faster (alternated stacks,
  /// by hand), paced views no faster.
  /// A caller's own `NIO_SINGLETON_GROUP_LOOP_COUNT` is passed through unchanged.
  public static var eventLoopsPerService: Int { max(1, System.coreCount / order.count) }

  ///
  /// A fixed port (the defaults of `rapport up` lie in Linux's range for outgoing connections' local
  /// ports) can be held for a while by a connection that is closing: a process that exits because its
  /// address is in use is started again every 2 s for up to a minute.
  public static func launch(
    _ name: String, port: Int, database: DatabaseURL, upstream: [(String, HostPort)], dataDirectory: String,
    settings: [String: String] = [:], tlsDirectory: String? = nil
  ) async throws -> (ChildProcess, HostPort) {
    let giveUp = ContinuousClock.now + .seconds(60)
    while true {
      do {
        return try await launchOnce(
          name, port: port, database: database, upstream: upstream, dataDirectory: dataDirectory, settings: settings,
          tlsDirectory: tlsDirectory)
      } catch let error as AddressInUse {
        guard ContinuousClock.now < giveUp else { throw error.failure }
        try await Task.sleep(for: .seconds(2))
      }
    }
  }

  private static func launchOnce(
    _ name: String, port: Int, database: DatabaseURL, upstream: [(String, HostPort)], dataDirectory: String,
    settings: [String: String], tlsDirectory: String?
  ) async throws -> (ChildProcess, HostPort) {
    var settings = settings
    if let tlsDirectory {
      let files = TLSFiles(directory: tlsDirectory, name: name)
      settings["tls-cert"] = settings["tls-cert"] ?? files.certificate
      settings["tls-key"] = settings["tls-key"] ?? files.privateKey
      settings["tls-ca"] = settings["tls-ca"] ?? files.trustRoots
    } else {
      // Development: plaintext, and a gateway that serves calls without a key, unless `settings` say otherwise.
      settings["plaintext"] = settings["plaintext"] ?? "true"
      if name == "gateway" { settings["partner-auth"] = settings["partner-auth"] ?? "off" }
    }
    var environment = [
      "RAPPORT_\(name.uppercased())_ADDR": "127.0.0.1:\(port)",
      "RAPPORT_LOG_LEVEL": ProcessInfo.processInfo.environment["RAPPORT_LOG_LEVEL"] ?? "info",
    ]
    if ProcessInfo.processInfo.environment[eventLoopVariable] == nil {
      environment[eventLoopVariable] = "\(eventLoopsPerService)"
    }
    environment["RAPPORT_\(name.uppercased())_DATABASE_URL"] = database.role(of: name).urlString
    for (other, address) in upstream { environment["RAPPORT_\(name.uppercased())_\(other.uppercased())_ADDR"] = "\(address)" }
    for (setting, value) in settings {
      environment["RAPPORT_\(name.uppercased())_\(setting.uppercased().replacingOccurrences(of: "-", with: "_"))"] = value
    }
    try FileManager.default.createDirectory(atPath: "\(dataDirectory)/logs", withIntermediateDirectories: true)
    let process = try ChildProcess(
      name: "rapport-\(name)", executable: "\(try binaryDirectory())/rapport-\(name)", environment: environment,
      logPath: "\(dataDirectory)/logs/\(name).log")
    do {
      // A service listens once its migrations are applied: on a large shop's first start after an
      // upgrade that can take minutes (migration 23 fills the sales hours of every order). A process
      // that exits fails the wait at once.
      let address = try await process.address(timeout: .seconds(600))
      try await waitUntilServing(address, security: clientSecurity(tlsDirectory), of: process)
      return (process, address)
    } catch {
      await process.stop()
      // The gRPC or the metrics listener could not bind.
      if process.logTail().contains("Address already in use") { throw AddressInUse(failure: error) }
      throw error
    }
  }

  /// A launch that failed because one of the service's addresses was in use.
  private struct AddressInUse: Error {
    let failure: any Error
  }

  /// Starts a new process for service `name` on the address the old one had (which must have exited).
  public func restart(_ name: String) async throws {
    let current = processes
    guard let index = current.firstIndex(where: { $0.name == name }) else { return }
    let upstream = current.prefix(index).map { ($0.name, $0.address) }
    let (process, _) = try await Stack.launch(
      name, port: current[index].address.port, database: databaseURL, upstream: Array(upstream),
      dataDirectory: dataDirectory, settings: settings[name] ?? [:], tlsDirectory: tlsDirectory)
    entries.withLock { $0[index].process = process }
  }

  /// Until cancelled: a service that exits on its own is reported through `say` and restarted on its
  /// address after a backoff (1 s, doubling to 30 s; back to 1 s once it has run a minute).
  public func supervise(say: @Sendable (String) -> Void) async {
    var backoff: [String: Duration] = [:]
    var started: [String: ContinuousClock.Instant] = [:]
    while !Task.isCancelled {
      try? await Task.sleep(for: .milliseconds(500))
      for entry in processes where !entry.process.isRunning && !Task.isCancelled {
        if let since = started[entry.name], ContinuousClock.now - since > .seconds(60) { backoff[entry.name] = nil }
        let delay = backoff[entry.name] ?? .seconds(1)
        say(
          "rapport-\(entry.name) exited (status \(entry.process.exitStatus ?? -1)); restarting in \(delay) "
            + "(log: \(entry.process.logPath))")
        try? await Task.sleep(for: delay)
        backoff[entry.name] = min(delay * 2, .seconds(30))
        do {
          try await restart(entry.name)
          started[entry.name] = .now
          say("rapport-\(entry.name) restarted at \(entry.address)")
        } catch {
          say("rapport-\(entry.name) did not restart: \(error)")
        }
      }
    }
  }

  /// Stops the services in reverse order (each drains on SIGTERM), then the embedded database.
  public func stop() async {
    for entry in processes.reversed() { await entry.process.stop() }
    try? postgres?.stop()
  }

  /// The first service that exited on its own, if any.
  public var exited: String? { processes.first { !$0.process.isRunning }?.name }

  /// Polls `grpc.health.v1.Health/Check` until SERVING (30 s at most; with `process`, until it exits).
  public static func waitUntilServing(
    _ address: HostPort, security: HTTP2ClientTransport.Posix.TransportSecurity = .plaintext, of process: ChildProcess? = nil
  ) async throws {
    try await withClient(address, security: security) { client in
      let health = Grpc_Health_V1_Health.Client(wrapping: client)
      let deadline = ContinuousClock.now + .seconds(30)
      while ContinuousClock.now < deadline {
        if (try? await health.check(.init()).status) == .serving { return }
        if let process, !process.isRunning {
          throw ShellError(description: "\(process.name) exited (\(process.exitStatus ?? -1)) before it served")
        }
        try await Task.sleep(for: .milliseconds(100))
      }
      throw ShellError(description: "\(address) did not report SERVING within 30 s")
    }
  }

  /// The security of a client of the suite: mutual TLS as `operator` with the certificates in
  /// `tlsDirectory`, or plaintext without.
  public static func clientSecurity(_ tlsDirectory: String?, as name: String = CallerPolicy.Caller.operator)
    -> HTTP2ClientTransport.Posix.TransportSecurity
  {
    guard let tlsDirectory else { return .plaintext }
    let files = TLSFiles(directory: tlsDirectory, name: name)
    return .mTLS(
      certificateChain: [.file(path: files.certificate, format: .pem)], privateKey: .file(path: files.privateKey, format: .pem)
    ) { $0.trustRoots = .certificates([.file(path: files.trustRoots, format: .pem)]) }
  }

  /// Where the service executables are: next to this binary.
  public static func binaryDirectory() throws -> String {
    let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let directory = URL(fileURLWithPath: me).deletingLastPathComponent().path
    for name in order where !FileManager.default.isExecutableFile(atPath: "\(directory)/rapport-\(name)") {
      throw ShellError(description: "\(directory)/rapport-\(name) is missing: run `swift build` (or `swift build -c release`) first")
    }
    return directory
  }
}

/// A plaintext client to `address` for the duration of `body` (see `withClient`).
public func withPlaintextClient<Result: Sendable>(
  _ address: HostPort, timeout: Duration? = nil, _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
) async throws -> Result {
  try await withClient(address, security: .plaintext, timeout: timeout, body)
}

/// A client to `address` for the duration of `body`. Afterwards the client drains gracefully
/// for up to 5 s, then its connections are cancelled: a graceful client shutdown in grpc-swift-nio-transport
/// 2.9.2 was seen to stall now and then on a loaded machine after every RPC had finished, which hung
/// whatever waited for it (a test run, the CLI).
/// With `timeout`, every RPC without its own deadline gets that one.
/// With `retry`, every RPC follows that gRPC retry policy (e.g. retry UNAVAILABLE with backoff) and
/// waits for a connection rather than failing while none is ready (gRPC's `waitForReady`).
public func withClient<Result: Sendable>(
  _ address: HostPort, security: HTTP2ClientTransport.Posix.TransportSecurity, timeout: Duration? = nil,
  retry: RetryPolicy? = nil, _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
) async throws -> Result {
  var serviceConfig = GRPCClientService.roundRobin
  if timeout != nil || retry != nil {
    serviceConfig.methodConfig = [
      MethodConfig(
        names: [.init(service: "")], waitForReady: retry.map { _ in true }, timeout: timeout,
        executionPolicy: retry.map { .retry($0) })
    ]
  }
  let transport = try HTTP2ClientTransport.Posix(
    target: address.target, transportSecurity: security, resolverRegistry: GRPCClientService.resolvers,
    serviceConfig: serviceConfig)
  let client = GRPCClient(transport: transport)
  return try await withThrowingTaskGroup(of: Bool.self) { group in
    group.addTask {
      try await client.runConnections()
      return true
    }
    let result: Result
    do {
      result = try await body(client)
    } catch {
      group.cancelAll()
      throw error
    }
    client.beginGracefulShutdown()
    group.addTask {
      try? await Task.sleep(for: .seconds(5))
      return false
    }
    if try await group.next() == false {
      FileHandle.standardError.write(Data("client to \(address) did not drain within 5 s; closing it\n".utf8))
    }
    group.cancelAll()
    return result
  }
}

extension Stack {
  /// The child process of one service.
  public func process(_ name: String) -> ChildProcess { processes.first { $0.name == name }!.process }
}

/// Typed clients for the services of a running stack, one HTTP/2 connection each.
public struct StackClients: Sendable {
  public let customers: Rapport_Customer_V1_CustomerService.Client<HTTP2ClientTransport.Posix>
  public let orders: Rapport_Order_V1_OrderService.Client<HTTP2ClientTransport.Posix>
  public let support: Rapport_Support_V1_SupportService.Client<HTTP2ClientTransport.Posix>
  public let gateway: Rapport_Gateway_V1_PartnerGateway.Client<HTTP2ClientTransport.Posix>
}

extension Stack {
  /// Runs `body` with clients to the customer, order, support and gateway services.
  public func withClients<Result: Sendable>(_ body: (StackClients) async throws -> Result) async throws -> Result {
    let security = clientSecurity
    return try await withClient(address("customer"), security: security) { customer in
      try await withClient(address("order"), security: security) { order in
        try await withClient(address("support"), security: security) { support in
          try await withClient(address("gateway"), security: security) { gateway in
            try await body(
              StackClients(
                customers: .init(wrapping: customer), orders: .init(wrapping: order),
                support: .init(wrapping: support), gateway: .init(wrapping: gateway)))
          }
        }
      }
    }
  }
}
