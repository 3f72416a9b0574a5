import PostgresNIO

/// Reads a row's cells in SELECT order. Every record's `init(row:)` decodes with it: by position, with no
/// per-call lookup of column names (the SELECT that feeds an `init(row:)` is declared next to it).
public struct RowReader {
  private var cells: PostgresRow.Iterator
  private var index = 0

  public init(_ row: PostgresRow) { cells = row.makeIterator() }

  /// The next cell, decoded as `T` (an optional `T` reads SQL NULL as nil).
  public mutating func next<T: PostgresDecodable>(_ type: T.Type = T.self) throws -> T {
    guard let cell = cells.next() else { throw MissingColumn(index: index) }
    index += 1
    return try cell.decode(T.self)
  }

  /// The row has fewer columns than its decoder reads: a SELECT and its `init(row:)` disagree.
  public struct MissingColumn: Error, CustomStringConvertible {
    public let index: Int
    public var description: String { "row has no column \(index)" }
  }
}

extension PostgresQuery.StringInterpolation {
  /// A stored enum's integer code written into the statement as a literal, not a parameter: SQL names
  /// the Swift case (`state = \(code: CustomerState.active)`, never `state = 1`), and a partial index
  /// whose predicate is that code stays usable by every plan, prepared statements' generic ones included.
  public mutating func appendInterpolation<Code: RawRepresentable>(code: Code) where Code.RawValue == Int {
    appendLiteral(String(code.rawValue))
  }
}
