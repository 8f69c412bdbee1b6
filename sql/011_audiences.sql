-- 011_audiences: segments that audiences can use (docs/value.md, "Audiences").
-- A segment's members or export filtered by the contact decision for a
-- purpose and channel, each with the address to use on that channel, and
-- one audit row per export (or per members page carrying contact data)
-- with the number of customers it gave out. This file holds the columns;
-- the functions are in sql/functions/audiences.sql.

-- ---- partner sharing ----------------------------------------------------------

-- The profile fields a partner key may read (names of the audience field
-- list, docs/value.md), set by an admin when the key is created.
ALTER TABLE crm.api_keys ADD COLUMN shared_fields text[];
ALTER TABLE crm.api_keys ADD CONSTRAINT api_keys_shared_fields_partner
    CHECK (shared_fields IS NULL OR role = 'partner');
