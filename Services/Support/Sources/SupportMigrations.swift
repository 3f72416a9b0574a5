import RapportCore
import RapportProtos

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
    Migration(
      3, "threads, first response, solve time, CSAT",
      [
        """
        ALTER TABLE support.tickets
          ADD COLUMN first_response_at timestamptz,
          ADD COLUMN solved_at timestamptz,
          ADD COLUMN csat_rating integer CHECK (csat_rating BETWEEN 1 AND 5),
          ADD COLUMN csat_comment text,
          ADD COLUMN updated_at timestamptz
        """,
        "UPDATE support.tickets SET updated_at = created_at",
        "ALTER TABLE support.tickets ALTER COLUMN updated_at SET NOT NULL",
        """
        CREATE TABLE support.ticket_messages (
          id uuid PRIMARY KEY,
          recorded bigint GENERATED ALWAYS AS IDENTITY,
          ticket_id uuid NOT NULL REFERENCES support.tickets (id),
          request_id text,
          author_kind integer NOT NULL,
          author text NOT NULL,
          body text NOT NULL,
          internal boolean NOT NULL,
          attachments bytea NOT NULL,
          created_at timestamptz NOT NULL)
        """,
        "CREATE INDEX ticket_messages_ticket ON support.ticket_messages (ticket_id, recorded)",
        """
        CREATE UNIQUE INDEX ticket_messages_request ON support.ticket_messages (ticket_id, request_id)
          WHERE request_id IS NOT NULL
        """,
      ]),
    Migration(
      4, "assignment",
      [
        "ALTER TABLE support.tickets ADD COLUMN team text, ADD COLUMN assignee text",
        "CREATE INDEX tickets_assignee ON support.tickets (assignee, created_at DESC) WHERE assignee IS NOT NULL",
      ]),
    Migration(
      5, "SLA policies, calendars, teams, tags, order link, channel message ids",
      [
        """
        ALTER TABLE support.tickets
          ADD COLUMN order_id uuid,
          ADD COLUMN tags text[] NOT NULL DEFAULT '{}',
          ADD COLUMN customer_tier text,
          ADD COLUMN sla_policy text,
          ADD COLUMN channel_message_id text
        """,
        """
        CREATE UNIQUE INDEX tickets_channel_message ON support.tickets (channel, channel_message_id)
          WHERE channel_message_id IS NOT NULL
        """,
        "CREATE INDEX tickets_tags ON support.tickets USING gin (tags)",
        "CREATE INDEX tickets_solved ON support.tickets (solved_at) WHERE status = \(Rapport_Support_V1_TicketStatus.solved.rawValue)",
        """
        CREATE TABLE support.calendars (
          name text PRIMARY KEY,
          definition bytea NOT NULL,
          updated_at timestamptz NOT NULL)
        """,
        """
        CREATE TABLE support.sla_policies (
          name text PRIMARY KEY,
          priority integer NOT NULL,
          customer_tier text NOT NULL,
          calendar text NOT NULL REFERENCES support.calendars (name),
          first_response_s integer NOT NULL,
          next_response_s integer NOT NULL,
          resolution_s integer NOT NULL,
          updated_at timestamptz NOT NULL)
        """,
        """
        CREATE TABLE support.teams (
          name text PRIMARY KEY,
          agents text[] NOT NULL,
          round_robin boolean NOT NULL,
          turns bigint NOT NULL DEFAULT 0)
        """,
        """
        CREATE TABLE support.sla_targets (
          ticket_id uuid NOT NULL REFERENCES support.tickets (id),
          kind integer NOT NULL,
          cycle integer NOT NULL,
          state integer NOT NULL,
          target_s integer NOT NULL,
          consumed_s double precision NOT NULL,
          running_since timestamptz,
          started_at timestamptz NOT NULL,
          due_at timestamptz,
          achieved_at timestamptz,
          breached_at timestamptz,
          PRIMARY KEY (ticket_id, kind, cycle))
        """,
        """
        CREATE INDEX sla_targets_due ON support.sla_targets (due_at)
          WHERE state = \(Rapport_Support_V1_SlaState.active.rawValue)
        """,
        """
        CREATE INDEX sla_targets_breached ON support.sla_targets (ticket_id)
          WHERE state = \(Rapport_Support_V1_SlaState.breached.rawValue)
        """,
      ]),
    Migration(
      6, "ticket history: status, priority and assignment changes with their actor",
      [
        """
        CREATE TABLE support.ticket_history (
          ticket_id uuid NOT NULL REFERENCES support.tickets (id),
          recorded bigint GENERATED ALWAYS AS IDENTITY,
          changed_at timestamptz NOT NULL,
          actor text NOT NULL,
          from_status integer NOT NULL,
          to_status integer NOT NULL,
          from_priority integer NOT NULL,
          to_priority integer NOT NULL,
          assignment_changed boolean NOT NULL,
          team text NOT NULL,
          assignee text NOT NULL,
          PRIMARY KEY (ticket_id, recorded))
        """
      ]),
  ]
}
