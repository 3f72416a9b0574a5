import Logging
import PostgresNIO

extension Array where Element == UInt8 {
  /// The bytes as a `bytea` bind parameter (a plain `[UInt8]` binds as `"char"[]`).
  public var bytea: ByteBuffer { ByteBuffer(bytes: self) }
}
