import RapportCore

/// The order service's schema (`orders`), applied at start-up as role `rapport_order`.
enum OrderMigrations {
  static let schema = "orders"
  static let outbox = Outbox(schema: schema)

  static let all: [Migration] = [
    Migration(
      1, "orders, lines and outbox",
      [
        """
        CREATE TABLE orders.orders (
          id uuid PRIMARY KEY,
          customer_id uuid NOT NULL,
          channel integer NOT NULL,
          idempotency_key text NOT NULL,
          request_hash bytea NOT NULL,
          status integer NOT NULL,
          currency char(3) NOT NULL,
          total_minor bigint NOT NULL,
          created_at timestamptz NOT NULL,
          UNIQUE (channel, idempotency_key))
        """,
        "CREATE INDEX orders_customer_recent ON orders.orders (customer_id, created_at DESC, id DESC)",
        """
        CREATE TABLE orders.order_lines (
          order_id uuid NOT NULL REFERENCES orders.orders (id),
          line_no integer NOT NULL,
          sku text NOT NULL,
          title text NOT NULL,
          quantity bigint NOT NULL CHECK (quantity > 0),
          unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
          PRIMARY KEY (order_id, line_no))
        """,
      ] + outbox.migrationStatements),
    Migration(
      2, "customer feed cursor and merged-customer aliases",
      FeedCursors(schema: schema).migrationStatements + CustomerAliases(schema: schema).migrationStatements),
  ]
}
