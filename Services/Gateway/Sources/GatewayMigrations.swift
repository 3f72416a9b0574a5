import RapportCore

/// The gateway's schema, applied at start-up as role `rapport_gateway`: partners and their API keys.
enum GatewayMigrations {
  static let schema = "gateway"
  static let outbox = Outbox(schema: schema)

  static let all: [Migration] = [
    Migration(
      1, "partners and API keys",
      [
        """
        CREATE TABLE gateway.partners (
          id uuid PRIMARY KEY,
          name text NOT NULL,
          contact text NOT NULL,
          state integer NOT NULL,
          created_at timestamptz NOT NULL)
        """,
        """
        CREATE TABLE gateway.api_keys (
          id uuid PRIMARY KEY,
          partner_id uuid NOT NULL REFERENCES gateway.partners (id),
          secret_hash bytea NOT NULL,
          scopes text[] NOT NULL,
          company_ids uuid[] NOT NULL,
          rate_per_second integer NOT NULL,
          burst integer NOT NULL,
          expires_at timestamptz,
          revoked_at timestamptz,
          created_at timestamptz NOT NULL,
          last_used_at timestamptz)
        """,
        "CREATE INDEX api_keys_partner ON gateway.api_keys (partner_id, created_at)",
      ] + outbox.migrationStatements),
  ]
}
