import GRPCCore
import Logging
import PostgresNIO
import RapportProtos
import Synchronization

/// The process's serving state: SERVING only while the database answers and the process is not draining.
public final class HealthState: Sendable {
  private struct State {
    var databaseUp = true
    var databaseRefused = false
    var draining = false
    var watchers: [Int: AsyncStream<Grpc_Health_V1_HealthCheckResponse.ServingStatus>.Continuation] = [:]
    var nextWatcher = 0
    var status: Grpc_Health_V1_HealthCheckResponse.ServingStatus { databaseUp && !draining ? .serving : .notServing }
  }

  private let state = Mutex(State())

  public init() {}

  public var status: Grpc_Health_V1_HealthCheckResponse.ServingStatus { state.withLock { $0.status } }

  /// True while the last database probe that got an answer was refused (connection refused, the server
  /// shutting down or starting, the database closed): RPCs are answered UNAVAILABLE at once. A probe that
  /// merely timed out (a loaded machine) does not change it.
  public var databaseRefused: Bool { state.withLock { $0.databaseRefused } }

  /// Records that the database refused (or accepted) the last probe's connection.
  public func setDatabase(refused: Bool) { state.withLock { $0.databaseRefused = refused } }

  /// Records whether the database answered the last probe.
  public func setDatabase(up: Bool) { update { $0.databaseUp = up } }

  /// The process began draining: NOT_SERVING from now on.
  public func beginDraining() {
    update { $0.draining = true }
    let watchers = state.withLock { state in
      defer { state.watchers.removeAll() }
      return Array(state.watchers.values)
    }
    for watcher in watchers { watcher.finish() }
  }

  private func update(_ change: (inout State) -> Void) {
    let (status, watchers) = state.withLock { state in
      let before = state.status
      change(&state)
      return (state.status, before == state.status ? [] : Array(state.watchers.values))
    }
    for watcher in watchers { watcher.yield(status) }
  }

  /// A stream of status changes, starting with the current status.
  func watch() -> (Int, AsyncStream<Grpc_Health_V1_HealthCheckResponse.ServingStatus>) {
    let (stream, continuation) = AsyncStream.makeStream(
      of: Grpc_Health_V1_HealthCheckResponse.ServingStatus.self, bufferingPolicy: .bufferingNewest(1))
    let id = state.withLock { state in
      state.nextWatcher += 1
      state.watchers[state.nextWatcher] = continuation
      continuation.yield(state.status)
      if state.draining { continuation.finish() }
      return state.nextWatcher
    }
    return (id, stream)
  }

  func unwatch(_ id: Int) {
    let continuation = state.withLock { $0.watchers.removeValue(forKey: id) }
    continuation?.finish()
  }
}

/// `grpc.health.v1.Health` for one process: service "" and the process's own service names.
public struct HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol {
  let state: HealthState
  let services: Set<String>

  public init(state: HealthState, services: Set<String>) {
    self.state = state
    self.services = services.union([""])
  }

  public func check(
    request: Grpc_Health_V1_HealthCheckRequest, context: ServerContext
  ) async throws -> Grpc_Health_V1_HealthCheckResponse {
    guard services.contains(request.service) else {
      throw RPCError(code: .notFound, message: "unknown service '\(request.service)'")
    }
    return .with { $0.status = state.status }
  }

  public func watch(
    request: Grpc_Health_V1_HealthCheckRequest,
    response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
    context: ServerContext
  ) async throws {
    guard services.contains(request.service) else {
      try await response.write(.with { $0.status = .serviceUnknown })
      return
    }
    let (id, stream) = state.watch()
    try await withRPCCancellationHandler {
      for await status in stream { try await response.write(.with { $0.status = status }) }
    } onCancelRPC: {
      state.unwatch(id)
    }
  }
}

/// Probes the database every `interval` over a connection of its own (not through the pool, so a busy
/// pool is not mistaken for an outage; kept open, so a probe costs one `SELECT 1`, and reopened only
/// after a failure) and records the result in the health state: NOT_SERVING after a refusal or two
/// probes in a row without an answer in time; "refused" only when the server answered with an error or
/// refused the connection.
public struct DatabaseProbe: Sendable {
  let url: DatabaseURL
  let health: HealthState
  let interval: Duration
  let logger: Logger

  public init(url: DatabaseURL, health: HealthState, interval: Duration = .seconds(2), logger: Logger) {
    self.url = url
    self.health = health
    self.interval = interval
    self.logger = logger
  }

  enum Outcome: Sendable { case up, refused, timedOut }

  public func run() async throws {
    var connection: PostgresConnection?
    var attempt = 0
    var timeouts = 0
    while !Task.isCancelled {
      attempt += 1
      let (outcome, open) = await probe(connection, id: attempt)
      connection = open
      if outcome != .up { logger.warning("database probe failed", metadata: ["outcome": "\(outcome)"]) }
      // One slow probe on a loaded machine is not an outage: NOT_SERVING after a refusal, or after two
      // probes in a row that got no answer in time.
      timeouts = outcome == .timedOut ? timeouts + 1 : 0
      health.setDatabase(up: outcome == .up || (outcome == .timedOut && timeouts < 2))
      if outcome != .timedOut { health.setDatabase(refused: outcome == .refused) }
      try? await Task.sleep(for: interval)
    }
    try? await connection?.close()
  }

  /// One probe on `connection` (opened first if nil); returns the outcome and the connection to reuse.
  private func probe(_ connection: PostgresConnection?, id: Int) async -> (Outcome, PostgresConnection?) {
    let url = self.url
    let logger = self.logger
    let first = FirstResult<(Outcome, PostgresConnection?)>()
    let work = Task {
      var open = connection
      do {
        if open == nil {
          var configuration = try url.connectionConfiguration()
          // Longer than the probe's own limit: a slow connect on a loaded machine is a timeout (health
          // NOT_SERVING), never "refused" (which makes every RPC UNAVAILABLE at once).
          configuration.options.connectTimeout = .seconds(10)
          open = try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger)
        }
        _ = try await open!.query("SELECT 1", logger: logger)
        if !first.finish(.success((.up, open))) { try? await open?.close() }
      } catch {
        try? await open?.close()
        first.finish(.success((Task.isCancelled ? .timedOut : .refused, nil)))
      }
    }
    let timer = Task {
      try? await Task.sleep(for: interval)
      work.cancel()
      first.finish(.success((.timedOut, nil)))
    }
    defer { timer.cancel() }
    return (try? await withTaskCancellationHandler {
      try await first.value()
    } onCancel: {
      work.cancel()
      first.finish(.success((.timedOut, nil)))
    }) ?? (.timedOut, nil)
  }
}
