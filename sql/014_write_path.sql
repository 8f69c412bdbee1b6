-- 014_write_path: the block check of every ingest back to the cost it had
-- before patterns existed (bench/ingest_profile.md, "Write path").
--
-- Since 007 a blocked row may be a regular expression (admin-editable,
-- crm.blocked_identifiers.pattern), and the check of an identifier became a
-- scan of every blocked row of its kind and of '*', each row's condition
-- evaluated from the JSON identifier again, each pattern matched on its
-- own, in a SQL function planned again at every call: 485,000 of the 2.27
-- million instructions of an ingest for a known customer (callgrind). The blocked
-- values are now compiled, per kind, into one row of this table: its exact
-- values and those of '*' (NULL when there are more than 64: the check
-- then probes the primary key of crm.blocked_identifiers), and its patterns
-- and those of '*', several combinable patterns joined into one alternation
-- (sql/functions/identity.sql, crm.compile_blocked_patterns). '*' has a row
-- of its own, for kinds without one. An identifier is checked against the
-- one row of its kind. crm.compile_blocked_patterns rebuilds the table from
-- crm.blocked_identifiers, by a statement trigger on every change of that
-- table and whenever the functions files are applied (every start), so it
-- cannot drift from what it is derived from.
CREATE TABLE crm.blocked_compiled (
    kind     text PRIMARY KEY,
    exact    text[],
    regexes  text[] NOT NULL
);
