import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import RapportCore
import RapportLocal

/// Runs a service built by its real builder inside the test process, listening on a free loopback port,
/// for the duration of `body`; then drains it as SIGTERM would. If the service stops on its own while
/// `body` runs, `body` is cancelled and the test fails naming the service (instead of waiting on a
/// service that is gone).
public func withRunningService<Result: Sendable>(
  _ app: ServiceApp, _ body: @Sendable (HostPort) async throws -> Result
) async throws -> Result {
  // The body runs as a child task of a group that ends before this function returns.
  try await withoutActuallyEscaping(body) { body in
    try await race(app, body)
  }
}

private func race<Result: Sendable>(
  _ app: ServiceApp, _ body: @escaping @Sendable (HostPort) async throws -> Result
) async throws -> Result {
  try await withThrowingTaskGroup(of: ServiceOutcome<Result>.self) { group in
    group.addTask {
      do {
        try await app.run(signals: [])
        return .serviceEnded(nil)
      } catch {
        return .serviceEnded(error)
      }
    }
    let address: HostPort
    do {
      // A hang detector, not a timing check: on 2 cores, with the suite's ~30 tests at once, start-up
      // (migrations) has taken over 30 s.
      address = try await withDeadline(.seconds(90), "service did not start listening") {
        try await app.listeningAddress()
      }
    } catch {
      await app.shutdown()
      group.cancelAll()
      throw error
    }
    group.addTask { .body(try await body(address)) }
    do {
      switch try await group.next() {
      case .body(let result)?:
        await app.shutdown()
        let watchdog = Task {
          try await Task.sleep(for: .seconds(20))
          print("rapport-\(app.config.name) has not drained 20 s after shutdown (test harness watchdog)")
        }
        defer { watchdog.cancel() }
        while let _ = try await group.next() {}
        return result
      case .serviceEnded(let error)?:
        group.cancelAll()
        throw TestFailure("rapport-\(app.config.name) stopped while the test was running: \(String(describing: error))")
      case nil:
        throw TestFailure("rapport-\(app.config.name): no outcome")
      }
    } catch {
      await app.shutdown()
      group.cancelAll()
      throw error
    }
  }
}

/// What finished first under `withRunningService`: the service (it should not) or the test's body.
enum ServiceOutcome<Result: Sendable>: Sendable {
  case serviceEnded((any Error)?)
  case body(Result)
}

/// A plaintext HTTP/2 client to `address`, running for the duration of `body`.
public func withClient<Result: Sendable>(
  to address: HostPort, _ body: @Sendable (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> Result
) async throws -> Result {
  try await withPlaintextClient(address, timeout: .seconds(30), body)
}

/// A logger for services under test: warnings and worse only, unless RAPPORT_TEST_LOG=debug.
public func testLogger(_ label: String) -> Logger {
  var logger = Logger(label: label)
  logger.logLevel = Logger.Level(rawValue: ProcessInfo.processInfo.environment["RAPPORT_TEST_LOG"] ?? "warning") ?? .warning
  return logger
}

/// Fails with `message` when `body` does not finish within `limit`.
public func withDeadline<Result: Sendable>(
  _ limit: Duration, _ message: String, _ body: @escaping @Sendable () async throws -> Result
) async throws -> Result {
  try await withThrowingTaskGroup(of: Result?.self) { group in
    group.addTask { try await body() }
    group.addTask {
      try await Task.sleep(for: limit)
      return nil
    }
    defer { group.cancelAll() }
    guard let first = try await group.next(), let result = first else { throw TestFailure(message) }
    return result
  }
}

/// Polls `condition` until it holds or `limit` passes; for effects that arrive asynchronously (events).
public func eventually(
  within limit: Duration = .seconds(10), _ message: String, _ condition: @Sendable () async throws -> Bool
) async throws {
  let deadline = ContinuousClock.now + limit
  while ContinuousClock.now < deadline {
    if (try? await condition()) == true { return }
    try await Task.sleep(for: .milliseconds(50))
  }
  throw TestFailure("not within \(limit): \(message)")
}

/// A harness-level failure (timeouts, processes that would not start).
public struct TestFailure: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}
