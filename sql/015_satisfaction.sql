-- 015_satisfaction: satisfaction as data (scores on interactions) and the
-- settings that tell service contact from marketing contact.
--
-- Scores are typed columns of crm.interactions, not a side table: they are
-- facts of the interaction (a survey answer, a review's stars, the rating
-- after a call), so they travel with it through merge and unmerge with no
-- extra code, and an interaction without scores writes nothing more than
-- before (three more null columns cost no byte in a row that has a null
-- already: its null bitmap grows from 17 to 20 bits, within the header's
-- padding; the partial index below is not touched). Adding nullable columns without a default rewrites nothing.
-- The checks are added NOT VALID: every existing row holds nulls, which
-- pass, so scanning the table under its exclusive lock would prove nothing;
-- new and updated rows are checked all the same. The functions that read
-- and write them are in sql/functions/ (ingest, profile, segments,
-- customize). docs/api.md "Satisfaction scores".

ALTER TABLE crm.interactions ADD COLUMN nps smallint, ADD COLUMN csat smallint,
                             ADD COLUMN ces smallint;
ALTER TABLE crm.interactions
    ADD CONSTRAINT interactions_nps_range CHECK (nps BETWEEN 0 AND 10) NOT VALID,
    ADD CONSTRAINT interactions_csat_range CHECK (csat BETWEEN 1 AND 5) NOT VALID,
    ADD CONSTRAINT interactions_ces_range CHECK (ces BETWEEN 1 AND 7) NOT VALID;

-- The scored interactions only: a customer's latest score of a kind (the
-- profile, segment fields) is a probe of this index, and the KPIs read the
-- scored interactions of a period from it. Unscored rows never enter it.
CREATE INDEX interactions_scored_idx
    ON crm.interactions (customer_id, occurred_at DESC, interaction_id DESC)
    WHERE nps IS NOT NULL OR csat IS NOT NULL OR ces IS NOT NULL;

-- Which purposes quiet hours and frequency caps hold for (JSON arrays of
-- purpose names; a missing or malformed row means every purpose but
-- service), and the purposes for which contact needs no grant, only the
-- absence of an opt-out (default none: every purpose needs consent).
-- docs/customize.md "Contact decision".
INSERT INTO crm.settings (key, value) VALUES
    ('contact_quiet_hours_purposes', '["marketing", "profiling", "partner_sharing"]'),
    ('contact_frequency_cap_purposes', '["marketing", "profiling", "partner_sharing"]'),
    ('contact_opt_out_purposes', '[]')
ON CONFLICT (key) DO NOTHING;
