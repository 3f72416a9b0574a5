-- Rapport database bootstrap: one schema and one login role per service, each role with rights on its
-- own schema only. Run as a superuser on the database the services use; safe to run again.
-- `rapport up` and the test harness apply this very file. Operators set passwords afterwards, e.g.
--   ALTER ROLE rapport_customer PASSWORD '...';
-- and give each service its own URL: postgres://rapport_customer:...@host:5432/rapport

DO $$
DECLARE
  r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['rapport_customer', 'rapport_order', 'rapport_support',
                           'rapport_analytics', 'rapport_gateway'] LOOP
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', r);
    END IF;
  END LOOP;
END
$$;

-- Nobody but a schema's owner may create objects; PUBLIC keeps no rights on public.
REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- Extensions live in their own schema, usable by every service role: pg_trgm backs the customer
-- service's name/email fragment search.
CREATE SCHEMA IF NOT EXISTS extensions;
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA extensions;
GRANT USAGE ON SCHEMA extensions TO rapport_customer, rapport_order, rapport_support, rapport_analytics,
  rapport_gateway;

CREATE SCHEMA IF NOT EXISTS customer AUTHORIZATION rapport_customer;
CREATE SCHEMA IF NOT EXISTS orders AUTHORIZATION rapport_order;
CREATE SCHEMA IF NOT EXISTS support AUTHORIZATION rapport_support;
CREATE SCHEMA IF NOT EXISTS analytics AUTHORIZATION rapport_analytics;
CREATE SCHEMA IF NOT EXISTS gateway AUTHORIZATION rapport_gateway;

-- Each role resolves unqualified names in its own schema only.
ALTER ROLE rapport_customer SET search_path = customer;
ALTER ROLE rapport_order SET search_path = orders;
ALTER ROLE rapport_support SET search_path = support;
ALTER ROLE rapport_analytics SET search_path = analytics;
ALTER ROLE rapport_gateway SET search_path = gateway;
