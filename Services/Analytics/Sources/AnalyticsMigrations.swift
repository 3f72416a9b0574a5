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
    // Expand only: new tables and columns. The order and support counters are rebuilt by replaying those
    // two feeds from their start (their cursors are reset with the counters, in this migration's
    // transaction), so history from before this release has its cancellations, refunds, ratings and
    // breaches too. Merges are not replayed: the aliases they left map old events to survivors.
    Migration(
      4, "orders and their lines, support counters, RFM edges",
      [
        """
        CREATE TABLE analytics.orders (
          order_id uuid PRIMARY KEY,
          customer_id uuid NOT NULL,
          placed_at timestamptz NOT NULL,
          currency char(3) NOT NULL,
          total_minor bigint NOT NULL,
          refunded_minor bigint NOT NULL DEFAULT 0,
          cancelled boolean NOT NULL DEFAULT false,
          channel integer NOT NULL)
        """,
        "CREATE INDEX orders_customer ON analytics.orders (customer_id)",
        "CREATE INDEX orders_placed ON analytics.orders (placed_at)",
        """
        CREATE TABLE analytics.order_lines (
          order_id uuid NOT NULL REFERENCES analytics.orders ON DELETE CASCADE,
          line integer NOT NULL,
          sku text NOT NULL,
          title text NOT NULL,
          quantity bigint NOT NULL,
          net_minor bigint NOT NULL,
          PRIMARY KEY (order_id, line))
        """,
        """
        ALTER TABLE analytics.customer_metrics
          ADD COLUMN tickets_opened bigint NOT NULL DEFAULT 0,
          ADD COLUMN sla_breaches bigint NOT NULL DEFAULT 0,
          ADD COLUMN rating_sum bigint NOT NULL DEFAULT 0,
          ADD COLUMN rating_count bigint NOT NULL DEFAULT 0
        """,
        """
        CREATE TABLE analytics.rfm_edges (
          dimension text NOT NULL,
          currency text NOT NULL DEFAULT '',
          edges float8[] NOT NULL,
          population bigint NOT NULL,
          computed_at timestamptz NOT NULL,
          PRIMARY KEY (dimension, currency))
        """,
        "DELETE FROM analytics.customer_revenue",
        "UPDATE analytics.customer_metrics SET order_count = 0, first_order_at = NULL, last_order_at = NULL, open_tickets = 0",
        "DELETE FROM analytics.feed_cursors WHERE source IN ('order', 'support')",
      ]),
    // Recommendations: per product its customers and units, per customer and product a time-decayed
    // affinity, per pair of products the customers who bought both; filled from the order lines
    // already stored, then kept up to date by each batch of OrderPlaced (AnalyticsStore+Recommendations).
    Migration(
      5, "recommendations",
      [
        """
        CREATE TABLE analytics.items (
          sku text PRIMARY KEY,
          title text NOT NULL,
          customers bigint NOT NULL,
          units bigint NOT NULL)
        """,
        """
        CREATE TABLE analytics.customer_items (
          customer_id uuid NOT NULL,
          sku text NOT NULL,
          affinity float8 NOT NULL,
          PRIMARY KEY (customer_id, sku))
        """,
        """
        CREATE TABLE analytics.item_pairs (
          a text NOT NULL,
          b text NOT NULL,
          customers bigint NOT NULL,
          PRIMARY KEY (a, b))
        """,
        """
        INSERT INTO analytics.customer_items (customer_id, sku, affinity)
        SELECT o.customer_id, l.sku, sum(\(AnalyticsStore.affinitySQL("o.placed_at")))
        FROM analytics.order_lines l JOIN analytics.orders o USING (order_id) GROUP BY o.customer_id, l.sku
        """,
        """
        INSERT INTO analytics.items (sku, title, customers, units)
        SELECT l.sku, (array_agg(l.title ORDER BY o.placed_at DESC))[1], count(DISTINCT o.customer_id), sum(l.quantity)
        FROM analytics.order_lines l JOIN analytics.orders o USING (order_id) GROUP BY l.sku
        """,
        """
        INSERT INTO analytics.item_pairs (a, b, customers)
        SELECT x.sku, y.sku, count(*) FROM analytics.customer_items x
        JOIN analytics.customer_items y ON y.customer_id = x.customer_id AND y.sku <> x.sku
        GROUP BY x.sku, y.sku
        """,
      ]),
    // BG/NBD and Gamma-Gamma fits (AnalyticsStore+Prediction): the model in use per currency and the
    // newest fits asked for other observation ends, each as its `PredictionModel` message.
    Migration(
      6, "prediction models",
      [
        """
        CREATE TABLE analytics.prediction_models (
          id bigserial PRIMARY KEY,
          currency char(3) NOT NULL,
          as_of timestamptz NOT NULL,
          fitted_at timestamptz NOT NULL,
          fit_seconds float8 NOT NULL,
          in_use boolean NOT NULL,
          model bytea NOT NULL)
        """,
        "CREATE INDEX prediction_models_currency ON analytics.prediction_models (currency, in_use, id)",
      ]),
    // Rule segments (AnalyticsStore+Segments): consent decisions from the customer feed (ConsentChanged),
    // erased customers (excluded from segments), versioned rules and their members. The customer feed's
    // cursor is reset so earlier consent decisions and erasures are replayed (merges apply once: their
    // aliases are recorded idempotently).
    Migration(
      7, "rule segments",
      [
        """
        CREATE TABLE analytics.customer_consent (
          customer_id uuid NOT NULL,
          purpose integer NOT NULL,
          channel integer NOT NULL,
          granted boolean NOT NULL,
          decided_at timestamptz NOT NULL,
          PRIMARY KEY (customer_id, purpose, channel))
        """,
        "CREATE TABLE analytics.erased_customers (customer_id uuid PRIMARY KEY, erased_at timestamptz NOT NULL)",
        """
        CREATE TABLE analytics.segments (
          id text PRIMARY KEY,
          rule text NOT NULL,
          description text NOT NULL,
          version bigint NOT NULL,
          created_at timestamptz NOT NULL,
          updated_at timestamptz NOT NULL,
          evaluated_at timestamptz)
        """,
        """
        CREATE TABLE analytics.segment_versions (
          segment_id text NOT NULL REFERENCES analytics.segments ON DELETE CASCADE,
          version bigint NOT NULL,
          rule text NOT NULL,
          description text NOT NULL,
          created_at timestamptz NOT NULL,
          PRIMARY KEY (segment_id, version))
        """,
        """
        CREATE TABLE analytics.segment_members (
          segment_id text NOT NULL REFERENCES analytics.segments ON DELETE CASCADE,
          customer_id uuid NOT NULL,
          since timestamptz NOT NULL,
          PRIMARY KEY (segment_id, customer_id))
        """,
        "CREATE INDEX segment_members_since ON analytics.segment_members (segment_id, since, customer_id)",
        "DELETE FROM analytics.feed_cursors WHERE source = 'customer'",
      ]),
    // Sales reads that do not grow with the history (AnalyticsStore+Sales): each customer's first order
    // not cancelled, kept with their metrics; product sales per UTC day and per UTC month, kept by the
    // same transactions that apply placements and cancellations. Both filled from the orders so far.
    Migration(
      8, "sales rollups",
      [
        "ALTER TABLE analytics.customer_metrics ADD COLUMN first_kept_order_at timestamptz",
        """
        UPDATE analytics.customer_metrics m SET first_kept_order_at = f.first_at
        FROM (SELECT customer_id, min(placed_at) AS first_at FROM analytics.orders WHERE NOT cancelled GROUP BY customer_id) f
        WHERE f.customer_id = m.customer_id
        """,
        """
        CREATE TABLE analytics.product_sales (
          grain text NOT NULL CHECK (grain IN ('day', 'month')),
          period timestamptz NOT NULL,
          currency char(3) NOT NULL,
          channel integer NOT NULL,
          sku text NOT NULL,
          quantity bigint NOT NULL,
          net_minor bigint NOT NULL,
          orders bigint NOT NULL,
          PRIMARY KEY (grain, currency, period, channel, sku))
        """,
        """
        INSERT INTO analytics.product_sales (grain, period, currency, channel, sku, quantity, net_minor, orders)
        \(AnalyticsStore.productSalesSQL(
          from: "(SELECT o.order_id, o.placed_at, o.currency, o.channel, l.sku, l.quantity, l.net_minor FROM analytics.order_lines l JOIN analytics.orders o USING (order_id) WHERE NOT o.cancelled)"))
        """,
      ]),
    // Tags and custom attributes for rule segments (CustomerProfiles): read from the customer service
    // when the customer feed says they changed. The customer feed is read again from its start so that
    // customers whose tags or attributes were updated before this version get theirs (a `CustomerCreated`
    // from before it does not say whether the customer was created with tags).
    Migration(
      9, "customer profiles",
      [
        """
        CREATE TABLE analytics.customer_profiles (
          customer_id uuid PRIMARY KEY,
          version bigint NOT NULL,
          tags text[] NOT NULL)
        """,
        """
        CREATE TABLE analytics.customer_attributes (
          customer_id uuid NOT NULL REFERENCES analytics.customer_profiles ON DELETE CASCADE,
          key text NOT NULL,
          text_value text,
          number_value double precision,
          bool_value boolean,
          PRIMARY KEY (customer_id, key))
        """,
        "DELETE FROM analytics.feed_cursors WHERE source = 'customer'",
      ]),
    // Cohort retention in UTC without reading the orders (AnalyticsStore+Cohorts): customers per
    // (first-order month, month of activity), kept by the transactions that change orders.
    Migration(
      10, "cohort cells",
      [
        """
        CREATE TABLE analytics.cohort_cells (
          cohort timestamptz NOT NULL,
          month timestamptz NOT NULL,
          customers bigint NOT NULL,
          PRIMARY KEY (cohort, month))
        """,
        "INSERT INTO analytics.cohort_cells (cohort, month, customers) \(AnalyticsStore.cohortCellsSQL(where: "true"))",
      ]),
    // Sales summaries in UTC without reading every order of the range (AnalyticsStore+Kept): totals per
    // period, and each customer's first and last order per currency and channel.
    Migration(
      11, "sales periods and customer scopes",
      [
        """
        CREATE TABLE analytics.sales_periods (
          unit text NOT NULL CHECK (unit IN ('day', 'week', 'month')),
          period timestamptz NOT NULL,
          currency char(3) NOT NULL,
          channel integer NOT NULL,
          orders bigint NOT NULL,
          net_minor bigint NOT NULL,
          active bigint NOT NULL,
          new bigint NOT NULL,
          PRIMARY KEY (unit, currency, channel, period))
        """,
        "INSERT INTO analytics.sales_periods \(AnalyticsStore.salesPeriodsSQL(where: "true"))",
        """
        CREATE TABLE analytics.customer_scopes (
          customer_id uuid NOT NULL,
          currency char(3) NOT NULL,
          channel integer NOT NULL,
          first_kept_at timestamptz NOT NULL,
          last_at timestamptz NOT NULL,
          PRIMARY KEY (customer_id, currency, channel))
        """,
        """
        INSERT INTO analytics.customer_scopes
        SELECT customer_id, currency, channel, first_kept_at, last_at FROM (\(AnalyticsStore.customerScopesSQL(where: "true"))) s
        """,
        "CREATE INDEX customer_scopes_last ON analytics.customer_scopes (currency, channel, last_at) INCLUDE (first_kept_at)",
      ]),
    // What sales reads of a range's orders need, in the index: a period cut by the range, or a range in
    // another time zone, is read without visiting the table (once vacuum has marked its pages visible).
    Migration(
      12, "orders by currency and time",
      [
        """
        CREATE INDEX orders_sales ON analytics.orders (currency, placed_at)
        INCLUDE (customer_id, channel, total_minor, refunded_minor, cancelled)
        """
      ]),
    // Top products per RFM segment without scoring every customer and reading their orders at each read
    // (AnalyticsStore+SegmentSales): what RFM scores a customer by, per scope; each customer's segment and
    // when it changes by itself; the product rollups per segment. Filled by the next computation of the
    // RFM edges (one runs at start); until then a read scores every customer as before.
    Migration(
      13, "rfm segment sales",
      [
        "ALTER TABLE analytics.customer_scopes ADD COLUMN orders bigint NOT NULL DEFAULT 0, ADD COLUMN net_minor bigint NOT NULL DEFAULT 0",
        """
        UPDATE analytics.customer_scopes k SET orders = s.orders, net_minor = s.net_minor
        FROM (\(AnalyticsStore.customerScopesSQL(where: "true"))) s
        WHERE (k.customer_id, k.currency, k.channel) = (s.customer_id, s.currency, s.channel)
        """,
        """
        CREATE TABLE analytics.rfm_members (
          customer_id uuid PRIMARY KEY,
          segment smallint NOT NULL,
          valid_until timestamptz)
        """,
        "CREATE INDEX rfm_members_segment ON analytics.rfm_members (segment)",
        "CREATE INDEX rfm_members_valid_until ON analytics.rfm_members (valid_until)",
        """
        CREATE TABLE analytics.rfm_segment_sales (
          segment smallint NOT NULL,
          grain text NOT NULL CHECK (grain IN ('day', 'month')),
          period timestamptz NOT NULL,
          currency char(3) NOT NULL,
          channel integer NOT NULL,
          sku text NOT NULL,
          quantity bigint NOT NULL,
          net_minor bigint NOT NULL,
          orders bigint NOT NULL,
          PRIMARY KEY (segment, grain, currency, period, channel, sku))
        """,
        "CREATE TABLE analytics.rfm_segment_state (edges_computed_at timestamptz NOT NULL)",
      ]),
    // Kept RFM segments maintained beside the feeds instead of inside their transactions: each order
    // says in which segment its lines are counted, and a change to orders marks its customers pending.
    // The kept segments start over (filled by the next computation of the edges, one runs at start).
    Migration(
      14, "rfm segments pending",
      [
        "ALTER TABLE analytics.orders ADD COLUMN rfm_segment smallint",
        "CREATE TABLE analytics.rfm_pending (customer_id uuid PRIMARY KEY)",
        "TRUNCATE analytics.rfm_members, analytics.rfm_segment_sales, analytics.rfm_segment_state",
      ]),
    // A feed marks a pending customer again by a new version instead of waiting for a scoring pass that
    // holds the row (AnalyticsStore+SegmentSales).
    Migration(15, "rfm pending versions", ["ALTER TABLE analytics.rfm_pending ADD COLUMN version bigint NOT NULL DEFAULT 0"]),
    // Sales periods and cohort cells kept in the reporting zone besides UTC (AnalyticsStore+Zones): the
    // rows so far are UTC's; another zone's rows are computed when the service is configured with it.
    Migration(
      16, "kept zones",
      [
        "CREATE TABLE analytics.kept_zones (zone text PRIMARY KEY, built_at timestamptz NOT NULL DEFAULT now())",
        "INSERT INTO analytics.kept_zones (zone) VALUES ('UTC')",
        "ALTER TABLE analytics.sales_periods ADD COLUMN zone text NOT NULL DEFAULT 'UTC'",
        "ALTER TABLE analytics.sales_periods DROP CONSTRAINT sales_periods_pkey, ADD PRIMARY KEY (zone, unit, currency, channel, period)",
        "ALTER TABLE analytics.cohort_cells ADD COLUMN zone text NOT NULL DEFAULT 'UTC'",
        "ALTER TABLE analytics.cohort_cells DROP CONSTRAINT cohort_cells_pkey, ADD PRIMARY KEY (zone, cohort, month)",
      ]),
    // Product rollups for all channels at once (channel 0), so that top products over every channel read
    // a quarter of the rows. A database created at this version has them already (migration 8 fills
    // them with `productSalesSQL`, which adds them); rows a feed emptied stay empty here too.
    Migration(
      17, "product sales for all channels",
      [
        """
        INSERT INTO analytics.product_sales (grain, period, currency, channel, sku, quantity, net_minor, orders)
        SELECT grain, period, currency, 0, sku, sum(quantity), sum(net_minor), sum(orders)
        FROM analytics.product_sales WHERE channel <> 0 GROUP BY grain, period, currency, sku
        ON CONFLICT DO NOTHING
        """,
        """
        INSERT INTO analytics.rfm_segment_sales (segment, grain, period, currency, channel, sku, quantity, net_minor, orders)
        SELECT segment, grain, period, currency, 0, sku, sum(quantity), sum(net_minor), sum(orders)
        FROM analytics.rfm_segment_sales WHERE channel <> 0 GROUP BY segment, grain, period, currency, sku
        ON CONFLICT DO NOTHING
        """,
      ]),
    // A customer's orders by time, in the index that finds a customer's orders: whether a customer has
    // an order in a part of a period (a kept period read less its orders outside the range) is one index
    // probe, not a scan of every order of the range; so is a customer's spend since a date.
    Migration(
      18, "orders by customer and time",
      [
        "CREATE INDEX orders_customer_placed ON analytics.orders (customer_id, placed_at)",
        "DROP INDEX analytics.orders_customer",
      ]),
    // A sales total's new and returning customers without counting every customer of the range: scope
    // rows per UTC day of their last order and of their customer's first, kept with the scopes
    // (AnalyticsStore+Kept); the partial first day is counted in the scopes by index.
    Migration(
      19, "scope days",
      [
        """
        CREATE TABLE analytics.scope_days (
          currency char(3) NOT NULL,
          channel integer NOT NULL,
          kind smallint NOT NULL CHECK (kind IN (0, 1)),
          day timestamptz NOT NULL,
          customers bigint NOT NULL,
          PRIMARY KEY (currency, channel, kind, day))
        """,
        "INSERT INTO analytics.scope_days \(AnalyticsStore.scopeDaysSQL)",
        "CREATE INDEX customer_scopes_first ON analytics.customer_scopes (currency, channel, first_kept_at)",
      ]),
    // Sales summaries and cohorts in a zone that is not kept are derived from UTC's rows and the customers
    // whose first order lies in a sliver between a UTC period's start and the zone's: found by index.
    Migration(
      20, "customers by first order",
      ["CREATE INDEX customer_metrics_first ON analytics.customer_metrics (first_kept_order_at)"]),
    // Zones kept because reads asked for them (AnalyticsStore+Zones): built a local month at a time
    // (`built_until`: NULL once every period is computed), dropped when no read asks for them.
    Migration(
      21, "learned zones",
      [
        """
        ALTER TABLE analytics.kept_zones ADD COLUMN learned boolean NOT NULL DEFAULT false,
          ADD COLUMN built_until timestamptz, ADD COLUMN read_at timestamptz NOT NULL DEFAULT now()
        """
      ]),
    // Until 2104c04 a placement whose local month is not its UTC month could count its customer twice
    // in that month in a zone other than UTC (AnalyticsStore+Kept, `placementWindow`). Those zones'
    // rows are dropped: the service computes its reporting zones again from the orders at start
    // (`keepZones`), and learns the others again when reads ask for them. UTC's rows were right.
    Migration(
      22, "zones other than UTC computed again",
      [
        "DELETE FROM analytics.sales_periods WHERE zone <> 'UTC'",
        "DELETE FROM analytics.cohort_cells WHERE zone <> 'UTC'",
        "DELETE FROM analytics.kept_zones WHERE zone <> 'UTC'",
      ]),
    // Days in a zone that is not kept, derived from the base zone's rows and these per UTC hour: orders
    // by how near their customer's previous and next orders are, and customers whose first order in a
    // scope comes hours after their first, so that no customer is looked up one by one
    // (AnalyticsStore+Kept, `SalesHour`, `FirstHour`; docs/ANALYTICS.md, "Sales").
    Migration(
      23, "sales hours",
      [
        """
        CREATE TABLE analytics.sales_hours (
          currency char(3) NOT NULL,
          channel integer NOT NULL,
          hour timestamptz NOT NULL,
          orders bigint NOT NULL,
          net_minor bigint NOT NULL,
          back integer[] NOT NULL,
          ahead integer[] NOT NULL,
          PRIMARY KEY (currency, channel, hour))
        """,
        """
        CREATE TABLE analytics.first_hours (
          currency char(3) NOT NULL,
          channel integer NOT NULL,
          hour timestamptz NOT NULL,
          kind smallint NOT NULL CHECK (kind IN (0, 1)),
          gap smallint NOT NULL,
          customers bigint NOT NULL,
          PRIMARY KEY (currency, channel, hour, kind, gap))
        """,
        """
        CREATE TABLE analytics.cohort_hours (
          hour timestamptz NOT NULL,
          cohort timestamptz NOT NULL,
          back integer[] NOT NULL,
          ahead integer[] NOT NULL,
          PRIMARY KEY (hour, cohort))
        """,
        AnalyticsStore.fillHoursSQL,
        "INSERT INTO analytics.cohort_hours \(AnalyticsStore.cohortHoursSQL)",
        // Reads plan on them at once: without statistics a derived read scanned every hour (5 s at 1M)
        // until autovacuum analyzed them.
        "ANALYZE analytics.sales_hours",
        "ANALYZE analytics.first_hours",
        "ANALYZE analytics.cohort_hours",
      ]),
    // Until this version a local midnight the clocks pass twice (Havana's, when summer time ends at
    // 01:00) was read as the earlier instant in zones behind UTC; PostgreSQL reads the later one
    // (`KeptZone.instant(atWallTime:)`). The rows of kept zones with such a midnight within the orders'
    // span are dropped and computed again (at start for reporting zones, when reads ask for the others);
    // other zones' rows were right.
    Migration(
      24, "zones with a midnight passed twice computed again",
      ["sales_periods", "cohort_cells", "kept_zones"].map { "DELETE FROM analytics.\($0) WHERE zone IN (\(AnalyticsStore.zonesPassingAMidnightTwiceSQL))" }),
    // Orders stored by the order feed whose lines the recommendation tables do not count yet: the feed
    // marks them, a pass adds them (AnalyticsStore+Recommendations). Replicas of earlier versions add
    // their orders' lines at once, as before; both ways count each order once.
    Migration(25, "purchases pending", ["CREATE TABLE analytics.purchases_pending (order_id uuid PRIMARY KEY)"]),
    // The version of `items` and `item_pairs`, bumped by every pass adding purchases in its transaction:
    // a process's `RecommendationModel` holding an older one loads them again before ranking.
    Migration(
      26, "recommendation version",
      [
        "CREATE TABLE analytics.recommendation_version (one boolean PRIMARY KEY DEFAULT true CHECK (one), version bigint NOT NULL)",
        "INSERT INTO analytics.recommendation_version (version) VALUES (0)",
      ]),
    // A customer's segments (`GetCustomerMetrics`) were read by scanning every segment's members.
    Migration(27, "segment members by customer", ["CREATE INDEX segment_members_customer ON analytics.segment_members (customer_id)"]),
  ]
}
