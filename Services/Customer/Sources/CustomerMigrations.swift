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
    Migration(
      2, "identities, profile, consent, companies, interactions, merge and erase",
      [
        """
        CREATE TABLE customer.identities (
          kind integer NOT NULL,
          channel integer NOT NULL,
          value text NOT NULL,
          customer_id uuid NOT NULL REFERENCES customer.customers (id),
          added_at timestamptz NOT NULL,
          PRIMARY KEY (kind, channel, value))
        """,
        "CREATE INDEX identities_customer ON customer.identities (customer_id, added_at)",
        """
        INSERT INTO customer.identities (kind, channel, value, customer_id, added_at)
        SELECT 1, 0, email, id, created_at FROM customer.customers
        UNION ALL
        SELECT 2, 0, phone, id, created_at FROM customer.customers WHERE phone ~ '^[+][1-9][0-9]{7,14}$'
        """,
        "DROP INDEX customer.customers_email",
        "ALTER TABLE customer.customers DROP COLUMN email, DROP COLUMN phone",
        """
        ALTER TABLE customer.customers
          ADD COLUMN state integer NOT NULL DEFAULT 1,
          ADD COLUMN merged_into uuid REFERENCES customer.customers (id),
          ADD COLUMN version bigint NOT NULL DEFAULT 1,
          ADD COLUMN language text NOT NULL DEFAULT '',
          ADD COLUMN currency text NOT NULL DEFAULT '',
          ADD COLUMN contact_channel integer NOT NULL DEFAULT 0,
          ADD COLUMN tags text[] NOT NULL DEFAULT '{}',
          ADD COLUMN extras jsonb NOT NULL DEFAULT '{}',
          ADD COLUMN search_text text NOT NULL DEFAULT '',
          ADD COLUMN channels integer[] NOT NULL DEFAULT '{}',
          ADD COLUMN erased_at timestamptz,
          ADD COLUMN erase_reason text
        """,
        """
        UPDATE customer.customers c SET search_text = lower(concat_ws(' ', c.given_name, c.family_name,
          (SELECT string_agg(value, ' ') FROM customer.identities i WHERE i.customer_id = c.id AND i.kind = 1))),
          channels = CASE WHEN channel = 0 THEN '{}' ELSE ARRAY[channel] END
        """,
        """
        CREATE INDEX customers_search ON customer.customers
        USING gin (search_text extensions.gin_trgm_ops) WHERE state = 1
        """,
        "CREATE INDEX customers_recent ON customer.customers (created_at DESC, id DESC) WHERE state = 1",
        "CREATE INDEX customers_tags ON customer.customers USING gin (tags) WHERE state = 1",
        "CREATE INDEX customers_channels ON customer.customers USING gin (channels) WHERE state = 1",
        "CREATE INDEX customers_merged_into ON customer.customers (merged_into) WHERE merged_into IS NOT NULL",
        """
        CREATE TABLE customer.companies (
          id uuid PRIMARY KEY,
          legal_name text NOT NULL,
          tax_id text NOT NULL DEFAULT '',
          tier text NOT NULL DEFAULT '',
          price_list_code text NOT NULL DEFAULT '',
          payment_terms_net_days integer NOT NULL DEFAULT 0,
          credit_limit_minor bigint NOT NULL DEFAULT 0,
          credit_currency text NOT NULL DEFAULT '',
          account_manager text NOT NULL DEFAULT '',
          version bigint NOT NULL DEFAULT 1,
          created_at timestamptz NOT NULL,
          updated_at timestamptz NOT NULL)
        """,
        "CREATE UNIQUE INDEX companies_tax_id ON customer.companies (tax_id) WHERE tax_id <> ''",
        "CREATE INDEX companies_recent ON customer.companies (created_at, id)",
        """
        CREATE TABLE customer.company_contacts (
          company_id uuid NOT NULL REFERENCES customer.companies (id),
          customer_id uuid NOT NULL REFERENCES customer.customers (id),
          role text NOT NULL DEFAULT '',
          linked_at timestamptz NOT NULL,
          PRIMARY KEY (company_id, customer_id))
        """,
        "CREATE INDEX company_contacts_customer ON customer.company_contacts (customer_id)",
        "CREATE INDEX company_contacts_linked ON customer.company_contacts (company_id, linked_at, customer_id)",
        """
        CREATE TABLE customer.consent_history (
          id uuid PRIMARY KEY,
          customer_id uuid NOT NULL REFERENCES customer.customers (id),
          purpose integer NOT NULL,
          channel integer NOT NULL,
          granted boolean NOT NULL,
          source text NOT NULL,
          decided_at timestamptz NOT NULL,
          recorded_at timestamptz NOT NULL)
        """,
        "CREATE INDEX consent_history_customer ON customer.consent_history (customer_id, decided_at DESC)",
        """
        CREATE TABLE customer.consent_current (
          customer_id uuid NOT NULL REFERENCES customer.customers (id),
          purpose integer NOT NULL,
          channel integer NOT NULL,
          granted boolean NOT NULL,
          source text NOT NULL,
          decided_at timestamptz NOT NULL,
          recorded_at timestamptz NOT NULL,
          PRIMARY KEY (customer_id, purpose, channel))
        """,
        """
        CREATE TABLE customer.interactions (
          id uuid PRIMARY KEY,
          customer_id uuid NOT NULL REFERENCES customer.customers (id),
          channel integer NOT NULL,
          kind integer NOT NULL,
          summary text NOT NULL,
          occurred_at timestamptz NOT NULL,
          external_ref text,
          recorded_at timestamptz NOT NULL)
        """,
        "CREATE INDEX interactions_timeline ON customer.interactions (customer_id, occurred_at DESC, id DESC)",
        """
        CREATE UNIQUE INDEX interactions_external ON customer.interactions (channel, external_ref)
        WHERE external_ref IS NOT NULL
        """,
      ]),
  ]
}
