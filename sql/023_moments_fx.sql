-- 023_moments_fx: personal-date moment kinds declared by admin
-- (GET/PUT /v1/settings/moments) and the dated currency rates table
-- (GET/PUT /v1/settings/fx-rates). docs/customize.md ("Personal dates")
-- and docs/value.md ("Currencies"); the functions are in
-- sql/functions/customize.sql and sql/functions/value.sql.

-- A moment kind may now come from a date trait: `trait` names the trait
-- whose anniversaries are the kind's moments ('birthday' for the built-in
-- birthday, 'attributes.<key>' for a declared personal date such as
-- attributes.wedding_date). The built-in kinds keep their names; a
-- declared kind has a trait and a lower-case name of its own.
ALTER TABLE crm.moment_kinds ADD COLUMN trait text UNIQUE
    CHECK (trait = 'birthday' OR trait ~ '^attributes\.[A-Za-z0-9_-]{1,64}$');
UPDATE crm.moment_kinds SET trait = 'birthday' WHERE kind = 'birthday';
ALTER TABLE crm.moment_kinds DROP CONSTRAINT moment_kinds_kind_check;
ALTER TABLE crm.moment_kinds ADD CONSTRAINT moment_kinds_kind_check
    CHECK (CASE WHEN kind IN ('birthday', 'anniversary', 'warranty')
                THEN trait IS NOT DISTINCT FROM (CASE kind WHEN 'birthday' THEN 'birthday' END)
                ELSE kind ~ '^[a-z][a-z0-9_]{0,63}$' AND trait LIKE 'attributes.%' END);

-- Dated currency rates: an amount in `currency` times `rate` is its value
-- in `base` (the base currency when the rate was set), for interactions
-- from `valid_from` (a UTC date) until the next rate of that currency.
-- Only the rates of the current base currency are used: after a change of
-- base_currency, rates to the new one must be set.
CREATE TABLE crm.fx_rates (
    base        text NOT NULL CHECK (base ~ '^[A-Z]{3}$'),
    currency    text NOT NULL CHECK (currency ~ '^[A-Z]{3}$' AND currency <> base),
    valid_from  date NOT NULL,
    rate        numeric NOT NULL CHECK (rate > 0),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (base, currency, valid_from)
);
