import PostgresNIO

/// A service's connections to its own database: one pool for everything, and a small one whose
/// connections plan each prepared statement once (`plan_cache_mode = force_generic_plan`, set when the
/// connection starts), for the hot statements whose best plan does not depend on their values: the reads by
/// key that the read path batches (a customer by id, a customer's order or support overview, a customer's
/// metrics: `= ANY($1::uuid[])` or `unnest($1::uuid[])` with `LATERAL`) and PlaceOrder's insert.
///
/// Why: PostgreSQL plans a prepared statement again on every execution while the plan made for the
/// values given looks cheaper than the generic one, and for an array parameter the generic plan assumes
/// 10 elements, so it always does: a `perf` profile of PostgreSQL during views showed most of its CPU in
/// the planner, far more than in running the view's four statements. The main pool keeps
/// PostgreSQL's choice, because its statements (search, lists with optional filters, analytics over
/// ranges) are the ones whose best plan depends on the values.
public struct Pools: Sendable {
  /// Every statement; PostgreSQL chooses custom or generic plans as usual.
  public let main: Database
  /// Prepared statements planned once per connection, `Pools.genericPlanConnections` connections at most.
  public let genericPlans: Database

  /// The generic-plan pool's size: a `ReadBatcher`'s statements at once (2), and room for PlaceOrders to
  /// insert while another holds the outbox lock until its commit.
  public static let genericPlanConnections = 4

  public init(main: Database, genericPlans: Database) {
    self.main = main
    self.genericPlans = genericPlans
  }
}
