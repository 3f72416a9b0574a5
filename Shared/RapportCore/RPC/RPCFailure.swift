import GRPCCore
import GRPCProtobuf
import Logging
import PostgresNIO

/// The one place that turns failures into the status a client sees. Clients get a precise code and a
/// message that names the field or resource; the detail of unexpected errors goes only to the log.
public enum RPCFailure {
  /// INVALID_ARGUMENT naming `field`, with a `google.rpc.BadRequest` field violation.
  public static func invalid(_ field: String, _ reason: String) -> GoogleRPCStatus {
    GoogleRPCStatus(
      code: .invalidArgument, message: "\(field): \(reason)",
      details: [.badRequest(violations: [.init(field: field, description: reason)])])
  }

  /// NOT_FOUND for a resource kind and id.
  public static func notFound(_ what: String, _ id: String) -> RPCError {
    RPCError(code: .notFound, message: "\(what) '\(id)' not found")
  }

  public static func alreadyExists(_ message: String) -> RPCError {
    RPCError(code: .alreadyExists, message: message)
  }

  public static func failedPrecondition(_ message: String) -> RPCError {
    RPCError(code: .failedPrecondition, message: message)
  }

  public static func unavailable(_ message: String) -> RPCError {
    RPCError(code: .unavailable, message: message)
  }

  public static func `internal`(_ message: String) -> RPCError {
    RPCError(code: .internalError, message: message)
  }

  /// Maps any error thrown while serving an RPC to what the client may see.
  public static func map(_ error: any Error, logger: Logger) -> any Error {
    switch error {
    case let error as RPCError:
      return error
    case let error as any RPCErrorConvertible & Error:
      return error
    case let error as PSQLError where error.code == .server:
      logger.error(
        "database error",
        metadata: ["sqlstate": "\(error.sqlState ?? "?")", "detail": "\(error.serverInfo?[.message] ?? "")"])
      return RPCError(code: .internalError, message: "internal error")
    case is PSQLError, is PostgresNIO.PostgresError:
      logger.warning("database unavailable", metadata: ["error": "\(String(reflecting: error))"])
      return RPCError(code: .unavailable, message: "database unavailable, retry later")
    case is CancellationError:
      return RPCError(code: .cancelled, message: "cancelled")
    default:
      logger.error("unexpected error", metadata: ["error": "\(String(reflecting: error))"])
      return RPCError(code: .internalError, message: "internal error")
    }
  }
}

/// Runs an RPC body, mapping whatever it throws through `RPCFailure.map`.
public func serving<Result: Sendable>(
  _ logger: Logger, _ body: () async throws -> Result
) async throws -> Result {
  do {
    return try await body()
  } catch {
    throw RPCFailure.map(error, logger: logger)
  }
}

extension PSQLError {
  /// The SQLSTATE of a server error, e.g. `23505` for a unique violation.
  public var sqlState: String? { serverInfo?[.sqlState] }
  /// True for a unique violation (23505).
  public var isUniqueViolation: Bool { sqlState == "23505" }
}
