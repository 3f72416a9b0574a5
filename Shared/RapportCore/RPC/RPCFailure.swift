import GRPCCore
import GRPCProtobuf
import Logging
import PostgresNIO
import _ConnectionPoolModule

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
    case let error as RPCError where error.code == .unknown && error.cause != nil:
      // grpc-swift wraps what an inner interceptor or the handler threw, if it is not an RPCError, as
      // UNKNOWN with the original as its cause (ServerRPCExecutor): map the original.
      return map(error.cause!, logger: logger)
    case let error as RPCError:
      return error
    case let error as any RPCErrorConvertible & Error:
      return error
    case let error as PostgresTransactionError:
      return map(error.closureError ?? error.commitError ?? error.beginError ?? error.rollbackError ?? error, logger: logger)
    case let error as PSQLError where error.code == .server:
      let sqlState = error.sqlState ?? "?"
      switch DatabaseFailure(sqlState: sqlState) {
      case .unavailable:
        logger.warning("database unavailable", metadata: ["sqlstate": "\(sqlState)"])
        return RPCError(code: .unavailable, message: "database unavailable, retry later")
      case .conflict:
        logger.info("transaction conflict", metadata: ["sqlstate": "\(sqlState)"])
        return RPCError(code: .aborted, message: "concurrent change, retry the request")
      case .other:
        logger.error(
          "database error",
          metadata: ["sqlstate": "\(sqlState)", "detail": "\(error.serverInfo?[.message] ?? "")"])
        return RPCError(code: .internalError, message: "internal error")
      }
    case is PSQLError, is PostgresNIO.PostgresError, is ConnectionPoolError:
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

/// What a PostgreSQL server error means to a client, by SQLSTATE class.
enum DatabaseFailure: Equatable {
  /// The server or the connection went away, is starting or shutting down, or lacks resources: retry.
  case unavailable
  /// A serialization failure or deadlock: retry the whole request (ABORTED).
  case conflict
  /// Anything else is a bug on our side (INTERNAL).
  case other

  init(sqlState: String) {
    switch sqlState {
    case _ where sqlState.hasPrefix("08"), _ where sqlState.hasPrefix("53"), "57P01", "57P02", "57P03", "57P05":
      self = .unavailable
    case "40001", "40P01":
      self = .conflict
    default:
      self = .other
    }
  }
}

extension PSQLError {
  /// The SQLSTATE of a server error, e.g. `23505` for a unique violation.
  public var sqlState: String? { serverInfo?[.sqlState] }
  /// True for a unique violation (23505).
  public var isUniqueViolation: Bool { sqlState == "23505" }
}
