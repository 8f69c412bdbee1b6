-- 022_identity_rules: two identity rules an administrator sets by hand
-- (issue 18; docs/identity.md, "Never merge" and "Detach an identifier").
--
-- crm.never_merge: pairs of customers that resolution must keep apart. A
-- pair names the two ids as the administrator gave them (smaller first);
-- it is applied to their survivors at the time of each resolve, so it
-- follows both sides through later merges (crm.never_merge_pairs,
-- sql/functions/identity.sql). Read only when a resolve would merge
-- customers: the known-customer path never looks at it.
--
-- crm.identifier_detachments: the history of identifiers taken off a
-- customer: moved to a new customer with the interactions they brought,
-- or deleted. interaction_ids: the interactions moved. Interactions have
-- recorded the identifiers they were sent with (crm.interactions.resolved_by)
-- since 001, so no column is needed to know which identifier brought one.

CREATE TABLE crm.never_merge (
    customer_id uuid NOT NULL REFERENCES crm.customers (customer_id),
    other_id    uuid NOT NULL REFERENCES crm.customers (customer_id),
    reason      text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (customer_id, other_id),
    CHECK (customer_id < other_id)
);
CREATE INDEX never_merge_other_idx ON crm.never_merge (other_id);

CREATE TABLE crm.identifier_detachments (
    detach_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     uuid NOT NULL REFERENCES crm.customers (customer_id),
    new_customer_id uuid REFERENCES crm.customers (customer_id),
    mode            text NOT NULL CHECK (mode IN ('move', 'delete')),
    identifier      jsonb NOT NULL,
    interaction_ids uuid[] NOT NULL DEFAULT '{}',
    actor           text NOT NULL,
    reason          text NOT NULL,
    detached_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((mode = 'move') = (new_customer_id IS NOT NULL))
);
CREATE INDEX identifier_detachments_customer_idx ON crm.identifier_detachments (customer_id);
CREATE INDEX identifier_detachments_new_customer_idx ON crm.identifier_detachments (new_customer_id)
    WHERE new_customer_id IS NOT NULL;
