import RapportCore

/// The support service's schema, applied at start-up as role `rapport_support`.
enum SupportMigrations {
  static let schema = "support"
  static let outbox = Outbox(schema: schema)

  static let all: [Migration] = [
    Migration(
      1, "tickets and outbox",
      [
        """
        CREATE TABLE support.tickets (
          id uuid PRIMARY KEY,
          request_id text,
          request_hash bytea,
          customer_id uuid NOT NULL,
          subject text NOT NULL,
          body text NOT NULL,
          priority integer NOT NULL,
          status integer NOT NULL,
          channel integer NOT NULL,
          created_at timestamptz NOT NULL)
        """,
        "CREATE UNIQUE INDEX tickets_request_id ON support.tickets (request_id) WHERE request_id IS NOT NULL",
        "CREATE INDEX tickets_customer_recent ON support.tickets (customer_id, created_at DESC, id DESC)",
      ] + outbox.migrationStatements),
    Migration(
      2, "customer feed cursor and merged-customer aliases",
      FeedCursors(schema: schema).migrationStatements + CustomerAliases(schema: schema).migrationStatements),
  ]
}
