import Foundation
import Logging
import PostgresNIO
import RapportCore
import RapportTesting
import Testing

/// The generic-plan pool (`Pools.genericPlans`) plans a read by key once per connection; the main pool keeps
/// PostgreSQL's choice, which for an array of keys is a new plan on every execution.
struct GenericPlanPoolTests {
  /// A read by key over an array parameter, as the batched reads are written (a lookup per key).
  enum ByKeysText: StatementText {
    static let sql = query([]).sql
    static func query(_ keys: [UUID]) -> PostgresQuery {
      """
      SELECT k.id, r.n FROM unnest(\(keys)::uuid[]) k(id)
      CROSS JOIN LATERAL (SELECT count(*) FROM pg_class WHERE relname = k.id::text) r(n)
      """
    }
  }

  @Test func theGenericPlanPoolPlansAStatementOnceAndTheMainPoolPlansItPerExecution() async throws {
    let database = try await TestDatabase.create()
    let config = testConfig("customer", database)
    let logger = testLogger("customer")
    let main = try ServiceApp.makePostgres(config: config, logger: logger)
    let genericPlans = try ServiceApp.makePostgres(config: config, logger: logger, genericPlans: true)
    try await withThrowingDiscardingTaskGroup { group in
      group.addTask { await main.client.run() }
      group.addTask { await genericPlans.client.run() }
      let keys = [UUID(), UUID()]
      for (pool, generic) in [(main, false), (genericPlans, true)] {
        let plans = try await pool.withConnection { connection in
          for _ in 0..<8 {
            let rows = try await connection.execute(Prepared<ByKeysText>(ByKeysText.query(keys)), logger: logger)
            var read = 0
            for try await _ in rows { read += 1 }
            #expect(read == keys.count)
          }
          let rows = try await connection.query(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = \(ByKeysText.sql)",
            logger: logger)
          var plans: [(Int, Int)] = []
          for try await row in rows.decode((Int, Int).self) { plans.append(row) }
          return plans
        }
        // Eight executions of one prepared statement: all on the generic plan, or all re-planned.
        #expect(plans.count == 1)
        #expect(plans.first.map { generic ? $0 == (8, 0) : $0 == (0, 8) } == true, "plans \(plans), generic: \(generic)")
      }
      group.cancelAll()
    }
  }
}
