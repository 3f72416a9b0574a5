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
    Migration(
      3, "lifecycle, payments, refunds, B2B terms, carts, customer references",
      [
        """
        ALTER TABLE orders.orders
          ADD COLUMN channel_order_reference text NOT NULL DEFAULT '',
          ADD COLUMN subtotal_minor bigint NOT NULL DEFAULT 0,
          ADD COLUMN discount_minor bigint NOT NULL DEFAULT 0,
          ADD COLUMN tax_minor bigint NOT NULL DEFAULT 0,
          ADD COLUMN shipping_minor bigint NOT NULL DEFAULT 0,
          ADD COLUMN shipping_address jsonb,
          ADD COLUMN billing_address jsonb,
          ADD COLUMN company_id uuid,
          ADD COLUMN purchase_order_number text,
          ADD COLUMN payment_terms_net_days integer,
          ADD COLUMN payment_due_at timestamptz,
          ADD COLUMN paid_minor bigint NOT NULL DEFAULT 0,
          ADD COLUMN refunded_minor bigint NOT NULL DEFAULT 0,
          ADD COLUMN carrier text,
          ADD COLUMN tracking_number text,
          ADD COLUMN shipped_at timestamptz,
          ADD COLUMN delivered_at timestamptz,
          ADD COLUMN overdue_at timestamptz,
          ADD COLUMN cart_id text,
          ADD COLUMN updated_at timestamptz,
          ADD CONSTRAINT orders_money CHECK (0 <= refunded_minor AND refunded_minor <= paid_minor AND paid_minor <= total_minor)
        """,
        "UPDATE orders.orders SET subtotal_minor = total_minor, updated_at = created_at",
        "ALTER TABLE orders.orders ALTER COLUMN updated_at SET NOT NULL",
        "CREATE INDEX orders_recent ON orders.orders (created_at DESC, id DESC)",
        """
        CREATE INDEX orders_due ON orders.orders (payment_due_at)
          WHERE payment_due_at IS NOT NULL AND overdue_at IS NULL
        """,
        """
        ALTER TABLE orders.order_lines
          ADD COLUMN discount_minor bigint NOT NULL DEFAULT 0 CHECK (discount_minor >= 0),
          ADD COLUMN tax_minor bigint NOT NULL DEFAULT 0 CHECK (tax_minor >= 0)
        """,
        """
        CREATE TABLE orders.status_history (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          order_id uuid NOT NULL REFERENCES orders.orders (id),
          from_status integer NOT NULL,
          to_status integer NOT NULL,
          changed_at timestamptz NOT NULL,
          actor text NOT NULL,
          reason text NOT NULL)
        """,
        "CREATE INDEX status_history_order ON orders.status_history (order_id, id)",
        """
        INSERT INTO orders.status_history (order_id, from_status, to_status, changed_at, actor, reason)
        SELECT id, 0, status, created_at, 'migration', 'placed' FROM orders.orders
        """,
        """
        CREATE TABLE orders.payments (
          id uuid PRIMARY KEY,
          recorded bigint GENERATED ALWAYS AS IDENTITY,
          order_id uuid NOT NULL REFERENCES orders.orders (id),
          amount_minor bigint NOT NULL CHECK (amount_minor > 0),
          method integer NOT NULL,
          provider text NOT NULL,
          provider_reference text NOT NULL,
          paid_at timestamptz NOT NULL,
          UNIQUE (provider, provider_reference))
        """,
        "CREATE INDEX payments_order ON orders.payments (order_id, recorded)",
        """
        CREATE TABLE orders.refunds (
          id uuid PRIMARY KEY,
          recorded bigint GENERATED ALWAYS AS IDENTITY,
          order_id uuid NOT NULL REFERENCES orders.orders (id),
          refund_reference text NOT NULL,
          amount_minor bigint NOT NULL CHECK (amount_minor > 0),
          reason text NOT NULL,
          actor text NOT NULL,
          refunded_at timestamptz NOT NULL,
          UNIQUE (order_id, refund_reference))
        """,
        "CREATE INDEX refunds_order ON orders.refunds (order_id, recorded)",
        """
        CREATE TABLE orders.carts (
          channel integer NOT NULL,
          cart_id text NOT NULL,
          customer_id uuid,
          anonymous_id text,
          currency char(3) NOT NULL,
          total_minor bigint NOT NULL,
          created_at timestamptz NOT NULL,
          updated_at timestamptz NOT NULL,
          abandoned_at timestamptz,
          order_id uuid,
          recovered_at timestamptz,
          PRIMARY KEY (channel, cart_id))
        """,
        """
        CREATE INDEX carts_idle ON orders.carts (updated_at)
          WHERE order_id IS NULL AND abandoned_at IS NULL AND customer_id IS NOT NULL
        """,
        "CREATE INDEX carts_customer ON orders.carts (customer_id)",
        """
        CREATE TABLE orders.cart_lines (
          channel integer NOT NULL,
          cart_id text NOT NULL,
          line_no integer NOT NULL,
          sku text NOT NULL,
          title text NOT NULL,
          quantity bigint NOT NULL CHECK (quantity > 0),
          unit_price_minor bigint NOT NULL CHECK (unit_price_minor >= 0),
          discount_minor bigint NOT NULL,
          tax_minor bigint NOT NULL,
          PRIMARY KEY (channel, cart_id, line_no),
          FOREIGN KEY (channel, cart_id) REFERENCES orders.carts (channel, cart_id))
        """,
        // What this service knows of a customer: confirmed ACTIVE (by an RPC), MERGED (into survivor_id)
        // or ERASED (from the customer feed). Placing an order share-locks the customer's ACTIVE row in
        // the same statement as the insert, so a merge or erase applied concurrently either sees the
        // order or makes the insert see the new state.
        """
        CREATE TABLE orders.customer_refs (
          customer_id uuid PRIMARY KEY,
          state integer NOT NULL,
          survivor_id uuid,
          updated_at timestamptz NOT NULL)
        """,
        """
        INSERT INTO orders.customer_refs (customer_id, state, survivor_id, updated_at)
        SELECT duplicate_id, 2, survivor_id, merged_at FROM orders.customer_aliases
        """,
      ]),
  ]
}
