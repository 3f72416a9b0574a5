import GRPCCore
import Logging

/// Calls one service makes to another, each under `timeout`, with the callee's refusals turned into
/// this request's: NOT_FOUND names what was looked up, INVALID_ARGUMENT names this request's field,
/// FAILED_PRECONDITION passes through; anything else (timeout, connection refused, internal error) is
/// UNAVAILABLE so the caller stores nothing and may retry.
public struct Upstream: Sendable {
  /// The callee, for messages: "customer service".
  public let name: String
  public let timeout: Duration
  public let logger: Logger

  public init(_ name: String, timeout: Duration, logger: Logger) {
    self.name = name
    self.timeout = timeout
    self.logger = logger
  }

  /// Runs `body` with call options carrying the timeout.
  /// - Parameters:
  ///   - what: the kind of thing looked up ("customer"), for NOT_FOUND.
  ///   - id: its id as the client gave it.
  ///   - field: this request's field that named it, for INVALID_ARGUMENT.
  public func call<Value: Sendable>(
    _ what: String, id: String, field: String, _ body: @Sendable (CallOptions) async throws -> Value
  ) async throws -> Value {
    var options = CallOptions.defaults
    options.timeout = timeout
    do {
      return try await body(options)
    } catch let error as RPCError where error.code == .notFound {
      throw RPCFailure.notFound(what, id)
    } catch let error as RPCError where error.code == .invalidArgument {
      throw RPCFailure.invalid(field, error.message)
    } catch let error as RPCError where error.code == .failedPrecondition {
      throw RPCFailure.failedPrecondition(error.message)
    } catch {
      logger.warning("\(name) did not answer", metadata: ["error": "\(error)"])
      throw RPCFailure.unavailable("\(name) unavailable; nothing was stored, retry later")
    }
  }
}
