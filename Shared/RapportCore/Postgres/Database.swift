import Logging
import PostgresNIO
import Synchronization

/// One of a service's connection pools, as its stores use it. Every lease goes through here, so the
/// process counts what postgres-nio 1.33.2's pool does not report (its queue-depth callback is empty):
/// the requests waiting for a connection right now, and the leases and the time they waited in total
/// (`LeaseQueue`, exported as `rapport_db_lease_requests_waiting{pool}`, `rapport_db_leases_total{pool}`
/// and `rapport_db_lease_wait_seconds_total{pool}`).
///
/// A query's rows are read to the end before its connection goes back to the pool (`Rows`), so a lease
/// is over when the call returns: the rows of the statements that go through here are bounded (pages,
/// batches, one customer's data). A caller that streams an unbounded result does so inside
/// `withConnection`.
public struct Database: Sendable {
  /// The pool itself: run by `ServiceApp`, closed when it stops.
  public let client: PostgresClient
  /// This pool's lease counts.
  public let queue: LeaseQueue

  /// - Parameter pool: the `pool` label of this pool's metrics (`main`, `generic_plans`).
  public init(_ client: PostgresClient, pool: String = "main") {
    self.client = client
    self.queue = LeaseQueue(pool: pool)
  }

  /// Runs `body` on a connection leased for it, counted as waiting until the lease is granted.
  public func withConnection<Result: Sendable>(
    _ body: (PostgresConnection) async throws -> Result
  ) async throws -> Result {
    let asked = queue.enter()
    var leased = false
    do {
      return try await client.withConnection { connection in
        leased = true
        queue.granted(asked)
        return try await body(connection)
      }
    } catch {
      if !leased { queue.abandoned() }
      throw error
    }
  }

  /// `body` in a transaction on one leased connection, rethrowing the error that caused the rollback (a
  /// unique violation, a domain error) rather than postgres-nio's `PostgresTransactionError` wrapper, so
  /// stores can map it.
  public func transaction<Result: Sendable>(
    logger: Logger, _ body: (PostgresConnection) async throws -> Result
  ) async throws -> Result {
    try await withConnection { connection in
      do {
        return try await connection.withTransaction(logger: logger) { connection in try await body(connection) }
      } catch let error as PostgresTransactionError {
        throw error.closureError ?? error.commitError ?? error.beginError ?? error
      }
    }
  }

  /// SQLSTATEs of a transaction that lost a race with a concurrent one and may simply run again: a
  /// deadlock (`40P01`) or a serialization failure (`40001`).
  public static let conflicts: Set<String> = ["40P01", "40001"]

  /// `transaction`, run again (up to three more times) when it failed with one of `retrying` — a lost
  /// race with a concurrent writer, which the next attempt sees as settled. `body` must have no effect
  /// outside the transaction.
  public func retryingTransaction<Result: Sendable>(
    logger: Logger, retrying: Set<String> = Database.conflicts, _ body: (PostgresConnection) async throws -> Result
  ) async throws -> Result {
    var attempt = 0
    while true {
      do {
        return try await transaction(logger: logger, body)
      } catch let error as PSQLError where retrying.contains(error.sqlState ?? "") && attempt < 3 {
        attempt += 1
        logger.debug("retrying after a concurrent write", metadata: ["sqlstate": "\(error.sqlState ?? "")"])
      }
    }
  }

  /// Runs `query` and reads its rows; the connection is back in the pool when this returns.
  @discardableResult
  public func query(_ query: PostgresQuery, logger: Logger) async throws -> Rows {
    try await withConnection { connection in
      Rows(try await connection.query(query, logger: logger).collect())
    }
  }

  /// Runs `statement` as a statement prepared once per connection and decodes its rows.
  public func execute<Statement: PostgresPreparedStatement>(
    _ statement: Statement, logger: Logger
  ) async throws -> [Statement.Row] where Statement.Row: Sendable {
    try await withConnection { connection in
      var rows: [Statement.Row] = []
      for try await row in try await connection.execute(statement, logger: logger) { rows.append(row) }
      return rows
    }
  }

  /// Runs `query` as the prepared statement `Text` (see `Prepared`).
  public func prepared<Text: StatementText>(_ text: Text.Type, _ query: PostgresQuery, logger: Logger) async throws -> Rows {
    Rows(try await execute(Prepared<Text>(query), logger: logger))
  }
}

/// A statement's rows, read to the end; decoded as a `PostgresRowSequence`'s are
/// (`for try await (a, b) in rows.decode((A, B).self)`).
public struct Rows: AsyncSequence, Sendable {
  public typealias Element = PostgresRow
  public let rows: [PostgresRow]

  public init(_ rows: [PostgresRow]) { self.rows = rows }

  public struct AsyncIterator: AsyncIteratorProtocol {
    var base: IndexingIterator<[PostgresRow]>
    public mutating func next() async throws -> PostgresRow? { base.next() }
  }

  public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: rows.makeIterator()) }

  /// The rows as an array.
  public func collect() -> [PostgresRow] { rows }
}

/// A pool's queue as its callers see it. Atomic counters, updated on every lease; read when the metrics
/// are scraped.
public final class LeaseQueue: Sendable {
  /// The `pool` label.
  public let pool: String
  private let waitingNow = Atomic<Int>(0)
  private let leases = Atomic<Int>(0)
  private let waitedNanoseconds = Atomic<Int>(0)

  init(pool: String) { self.pool = pool }

  /// Requests that asked for a connection and have not got one yet.
  public var waiting: Int { waitingNow.load(ordering: .relaxed) }
  /// Leases granted since the pool started.
  public var granted: Int { leases.load(ordering: .relaxed) }
  /// Time those leases waited for their connection, in total.
  public var waited: Duration { .nanoseconds(waitedNanoseconds.load(ordering: .relaxed)) }

  func enter() -> ContinuousClock.Instant {
    waitingNow.add(1, ordering: .relaxed)
    return .now
  }

  func granted(_ asked: ContinuousClock.Instant) {
    waitingNow.subtract(1, ordering: .relaxed)
    leases.add(1, ordering: .relaxed)
    waitedNanoseconds.add(Int((ContinuousClock.now - asked).nanoseconds), ordering: .relaxed)
  }

  func abandoned() { waitingNow.subtract(1, ordering: .relaxed) }
}
