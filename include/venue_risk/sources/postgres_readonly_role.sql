-- The read-only role the venue-risk `postgres` source connects as: it may log in and SELECT
-- from the reference schema `venue_risk`, and nothing else. The source refuses to read through
-- a superuser or through a role that may INSERT, UPDATE, DELETE or TRUNCATE anything in the
-- schemas its mapping reads.
--
-- Run as a role that may create roles and owns (or may grant on) the schema, in the venue
-- database, with psql (the variables are psql's):
--
--   psql -h HOST -U ADMIN -d DATABASE -v reader_password='...' -f postgres_readonly_role.sql
--
-- Optional: -v reader=ROLE_NAME (default venue_risk_reader), -v schema=SCHEMA (default
-- venue_risk; a venue's own mapping reads its own schemas: grant USAGE and SELECT on each).

\set ON_ERROR_STOP on
\if :{?reader}
\else
  \set reader venue_risk_reader
\endif
\if :{?schema}
\else
  \set schema venue_risk
\endif
\if :{?reader_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'set the role password: psql -v reader_password=... -f postgres_readonly_role.sql'; END $$;
\endif

CREATE ROLE :"reader" LOGIN PASSWORD :'reader_password'
  NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;

-- Every transaction of the role is read-only unless it says otherwise (the source also sets
-- its session read-only).
ALTER ROLE :"reader" SET default_transaction_read_only = on;

SELECT current_database() AS venue_database \gset
GRANT CONNECT ON DATABASE :"venue_database" TO :"reader";
GRANT USAGE ON SCHEMA :"schema" TO :"reader";
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"reader";
-- Tables the running role creates in the schema later are readable too.
ALTER DEFAULT PRIVILEGES IN SCHEMA :"schema" GRANT SELECT ON TABLES TO :"reader";
