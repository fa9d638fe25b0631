-- Step 00: what this audience may see, and the build's own description.
--
-- The build registers its inputs as Arrow views named in_<table> (staged tables, resolution
-- tables, steward tables) and sets two variables: audience (NULL for the all-agencies mart) and
-- built_at. Everything after this step reads the vis_* views only, so a row that the audience may
-- not see cannot reach any table, count, list or name of the mart.

-- A person record is visible when its own releasable_to names the audience. The visible rows
-- are materialised once: every later step reads them, and scanning the Arrow inputs again each
-- time costs more than the copy.
CREATE TEMP TABLE vis_person_record AS
SELECT *
FROM in_person_record
WHERE getvariable('audience') IS NULL
   OR list_contains(releasable_to, getvariable('audience'));

-- A detail row (identifier, phone, account, event) is visible when its own releasable_to names
-- the audience and its person record is not hidden. A detail row whose person record is missing
-- altogether stays in, so that the orphan check of step 90 reports it instead of hiding it.
CREATE TEMP TABLE hidden_record AS
SELECT record_id FROM in_person_record
WHERE getvariable('audience') IS NOT NULL
  AND NOT coalesce(list_contains(releasable_to, getvariable('audience')), false);

CREATE TEMP TABLE vis_identifier AS
SELECT * FROM in_identifier AS x
WHERE (getvariable('audience') IS NULL OR list_contains(releasable_to, getvariable('audience')))
  AND NOT EXISTS (SELECT 1 FROM hidden_record AS h WHERE h.record_id = x.record_id);

CREATE TEMP TABLE vis_phone AS
SELECT * FROM in_phone AS x
WHERE (getvariable('audience') IS NULL OR list_contains(releasable_to, getvariable('audience')))
  AND NOT EXISTS (SELECT 1 FROM hidden_record AS h WHERE h.record_id = x.record_id);

CREATE TEMP TABLE vis_account AS
SELECT * FROM in_account AS x
WHERE (getvariable('audience') IS NULL OR list_contains(releasable_to, getvariable('audience')))
  AND NOT EXISTS (SELECT 1 FROM hidden_record AS h WHERE h.record_id = x.record_id);

CREATE TEMP TABLE vis_event AS
SELECT * FROM in_event AS x
WHERE (getvariable('audience') IS NULL OR list_contains(releasable_to, getvariable('audience')))
  AND NOT EXISTS (SELECT 1 FROM hidden_record AS h WHERE h.record_id = x.record_id);

CREATE TABLE mart_info AS
SELECT
    coalesce(getvariable('audience'), 'all') AS audience,
    CAST(getvariable('built_at') AS TIMESTAMPTZ) AS built_at,
    CAST(getvariable('previous_built_at') AS TIMESTAMPTZ) AS previous_built_at,
    CAST(getvariable('hub_min') AS INTEGER) AS hub_min;
COMMENT ON TABLE mart_info IS 'One row describing this mart: who it was built for and when.';
COMMENT ON COLUMN mart_info.audience IS 'Agency this mart was built for, or all. Only rows releasable to it are present.';
COMMENT ON COLUMN mart_info.previous_built_at IS 'Build time of the mart that was current when this one was built (NULL for the first); "new since the previous version" means after this.';
COMMENT ON COLUMN mart_info.hub_min IS 'A phone, account, wallet, compound or case held by more than this many entities is a hub: entity_link.is_hub.';

-- Rows of each staged input that this audience may see: step 90 reconciles the mart against it.
CREATE TABLE mart_input AS
SELECT 'person_record' AS input_table, 'entity_record' AS mart_table, count(*) AS visible_rows FROM vis_person_record
UNION ALL SELECT 'identifier', 'entity_identifier', count(*) FROM vis_identifier
UNION ALL SELECT 'phone', 'entity_phone', count(*) FROM vis_phone
UNION ALL SELECT 'account', 'entity_account', count(*) FROM vis_account
UNION ALL SELECT 'event', 'entity_event', count(*) FROM vis_event;
COMMENT ON TABLE mart_input IS 'Rows of each staged input table visible to this audience; the mart tables must hold exactly as many (see mart_check).';
