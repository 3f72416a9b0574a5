import RapportCore

/// The customer service's schema, applied at start-up as role `rapport_customer`.
enum CustomerMigrations {
  static let schema = "customer"
  static let outbox = Outbox(schema: schema)

  static let all: [Migration] = [
    Migration(
      1, "customers and outbox",
      [
        """
        CREATE TABLE customer.customers (
          id uuid PRIMARY KEY,
          email text NOT NULL,
          given_name text NOT NULL DEFAULT '',
          family_name text NOT NULL DEFAULT '',
          phone text NOT NULL DEFAULT '',
          channel integer NOT NULL DEFAULT 0,
          created_at timestamptz NOT NULL,
          updated_at timestamptz NOT NULL)
        """,
        "CREATE UNIQUE INDEX customers_email ON customer.customers (email)",
      ] + outbox.migrationStatements),
  ]
}
