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
    Migration(
      2, "audit log",
      [
        """
        CREATE TABLE gateway.audit_log (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          at timestamptz NOT NULL,
          key_id uuid,
          partner_id uuid,
          method text NOT NULL,
          code integer NOT NULL,
          request_id text NOT NULL,
          latency_micros bigint NOT NULL)
        """,
        "CREATE INDEX audit_log_at ON gateway.audit_log (at DESC)",
        "CREATE INDEX audit_log_partner ON gateway.audit_log (partner_id, at DESC)",
      ]),
    Migration(3, "audit targets", ["ALTER TABLE gateway.audit_log ADD COLUMN target_ids text[] NOT NULL DEFAULT '{}'"]),
  ]
}
