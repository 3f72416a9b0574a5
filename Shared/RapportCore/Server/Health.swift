import GRPCCore
import Logging
import PostgresNIO
import RapportProtos
import Synchronization

/// The process's serving state: SERVING only while the database answers and the process is not draining.
public final class HealthState: Sendable {
  private struct State {
    var databaseUp = true
    var draining = false
    var watchers: [Int: AsyncStream<Grpc_Health_V1_HealthCheckResponse.ServingStatus>.Continuation] = [:]
    var nextWatcher = 0
    var status: Grpc_Health_V1_HealthCheckResponse.ServingStatus { databaseUp && !draining ? .serving : .notServing }
  }

  private let state = Mutex(State())

  public init() {}

  public var status: Grpc_Health_V1_HealthCheckResponse.ServingStatus { state.withLock { $0.status } }

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

/// Probes the database every `interval` and records the result in the health state.
public struct DatabaseProbe: Sendable {
  let client: PostgresClient
  let health: HealthState
  let interval: Duration
  let logger: Logger

  public init(client: PostgresClient, health: HealthState, interval: Duration = .seconds(2), logger: Logger) {
    self.client = client
    self.health = health
    self.interval = interval
    self.logger = logger
  }

  public func run() async throws {
    while !Task.isCancelled {
      let up = await withTimeout(interval) {
        _ = try await client.query("SELECT 1", logger: logger)
      }
      if !up { logger.warning("database probe failed") }
      health.setDatabase(up: up)
      try? await Task.sleep(for: interval)
    }
  }
}

/// Runs `body` with a time limit; true when it finished without error in time.
public func withTimeout(_ limit: Duration, _ body: @escaping @Sendable () async throws -> Void) async -> Bool {
  await withTaskGroup(of: Bool.self) { group in
    group.addTask { (try? await body()) != nil }
    group.addTask {
      try? await Task.sleep(for: limit)
      return false
    }
    let first = await group.next() ?? false
    group.cancelAll()
    return first
  }
}
