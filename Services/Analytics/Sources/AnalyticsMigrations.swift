import RapportCore

/// The analytics service's schema, applied at start-up as role `rapport_analytics`.
enum AnalyticsMigrations {
  static let schema = "analytics"
  static let outbox = Outbox(schema: schema)

  static let all: [Migration] = [
    Migration(
      1, "customer metrics and feed cursors",
      [
        """
        CREATE TABLE analytics.customer_metrics (
          customer_id uuid PRIMARY KEY,
          order_count bigint NOT NULL DEFAULT 0,
          first_order_at timestamptz,
          last_order_at timestamptz,
          open_tickets bigint NOT NULL DEFAULT 0,
          as_of timestamptz NOT NULL)
        """,
        """
        CREATE TABLE analytics.customer_revenue (
          customer_id uuid NOT NULL,
          currency char(3) NOT NULL,
          amount_minor bigint NOT NULL,
          PRIMARY KEY (customer_id, currency))
        """,
      ] + FeedCursors(schema: schema).migrationStatements),
    Migration(2, "merged-customer aliases", CustomerAliases(schema: schema).migrationStatements),
    // Every service is built the same way (`ServiceApp.publishing`): analytics has an outbox and an
    // EventFeed too, empty until it publishes its own events (segment membership, issue 14).
    Migration(3, "outbox", outbox.migrationStatements),
  ]
}
