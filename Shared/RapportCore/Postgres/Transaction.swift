import Logging
import PostgresNIO

extension PostgresClient {
  /// `withTransaction`, rethrowing the error that caused the rollback (a unique violation, a domain error)
  /// rather than postgres-nio's `PostgresTransactionError` wrapper, so stores can map it.
  public func transaction<Result: Sendable>(
    logger: Logger, _ body: (PostgresConnection) async throws -> Result
  ) async throws -> Result {
    do {
      return try await withTransaction(logger: logger) { connection in try await body(connection) }
    } catch let error as PostgresTransactionError {
      throw error.closureError ?? error.commitError ?? error.beginError ?? error
    }
  }
}

extension Array where Element == UInt8 {
  /// The bytes as a `bytea` bind parameter (a plain `[UInt8]` binds as `"char"[]`).
  public var bytea: ByteBuffer { ByteBuffer(bytes: self) }
}
