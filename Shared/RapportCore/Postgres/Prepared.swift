import Logging
import PostgresNIO

/// The text of a hot statement, the same for any values: every value is a parameter with an explicit
/// cast to the type its Swift value encodes as (`\(id)::uuid`, `\(limit)::int8`), because a prepared
/// statement's parameter types are inferred from the text. A caseless enum per statement conforms;
/// its `sql` is the statement built once from any values (`query(sample).sql`), so the text and the
/// call site's query cannot drift apart.
public protocol StatementText: Sendable {
  static var sql: String { get }
}

/// A read on the hot path executed as a statement prepared once per connection (postgres-nio keys it by
/// this type's name): PostgreSQL parses and plans it once, not on every call. Rows are decoded by the
/// caller, as those of an unnamed query are.
public struct Prepared<Text: StatementText>: PostgresPreparedStatement {
  public typealias Row = PostgresRow
  public static var sql: String { Text.sql }

  private let bindings: PostgresBindings

  /// The values of `query`, whose text must be `Text.sql` (checked in debug builds).
  public init(_ query: PostgresQuery) {
    assert(query.sql == Text.sql, "a prepared statement's text must not depend on its values")
    bindings = query.binds
  }

  public func makeBindings() -> PostgresBindings { bindings }
  public func decodeRow(_ row: PostgresRow) -> PostgresRow { row }
}
