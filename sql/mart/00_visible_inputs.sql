-- Step 00: what this audience may see, and the build's own description.
--
-- The build registers its inputs as views named in_<table> (staged tables, resolution tables,
-- steward tables) and sets the variable audience (NULL for the all-agencies mart). Everything
-- after this step reads the vis_* tables only, so a row that the audience may not see cannot
-- reach any table, count, list or name of the mart.
--
-- Only the steps named NN_audience_*.sql may read the audience's name; every other step depends
-- on which rows are visible and nothing else. So audiences that see the same rows share one
-- build, and only their audience steps are re-run on a copy (fusionlake.marts).

-- A person record is visible when its own releasable_to names the audience (visible_to, the
-- macro of sql/mart/visibility.sql). The visible rows are materialised once: every later step
-- reads them, and scanning the Arrow inputs again each time costs more than the copy.
CREATE TEMP TABLE vis_person_record AS
SELECT *
FROM in_person_record
WHERE visible_to(releasable_to, getvariable('audience'));

-- A detail row (identifier, phone, account, event) is visible when its own releasable_to names
-- the audience and its person record is not hidden. A detail row whose person record is missing
-- altogether stays in, so that the orphan check of step 90 reports it instead of hiding it.
CREATE TEMP TABLE hidden_record AS
SELECT record_id FROM in_person_record
WHERE NOT visible_to(releasable_to, getvariable('audience'));

CREATE TEMP TABLE vis_identifier AS
SELECT * FROM in_identifier AS x
WHERE visible_to(x.releasable_to, getvariable('audience'))
  AND NOT EXISTS (SELECT 1 FROM hidden_record AS h WHERE h.record_id = x.record_id);

CREATE TEMP TABLE vis_phone AS
SELECT * FROM in_phone AS x
WHERE visible_to(x.releasable_to, getvariable('audience'))
  AND NOT EXISTS (SELECT 1 FROM hidden_record AS h WHERE h.record_id = x.record_id);

CREATE TEMP TABLE vis_account AS
SELECT * FROM in_account AS x
WHERE visible_to(x.releasable_to, getvariable('audience'))
  AND NOT EXISTS (SELECT 1 FROM hidden_record AS h WHERE h.record_id = x.record_id);

CREATE TEMP TABLE vis_event AS
SELECT * FROM in_event AS x
WHERE visible_to(x.releasable_to, getvariable('audience'))
  AND NOT EXISTS (SELECT 1 FROM hidden_record AS h WHERE h.record_id = x.record_id);

-- A record's names (native script, Latin, aliases), visible with their record.
CREATE TEMP TABLE vis_person_name AS
SELECT * FROM in_person_name AS x
WHERE visible_to(x.releasable_to, getvariable('audience'))
  AND NOT EXISTS (SELECT 1 FROM hidden_record AS h WHERE h.record_id = x.record_id);

-- Rows of each staged input that this audience may see: step 90 reconciles the mart against it.
CREATE TABLE mart_input AS
SELECT 'person_record' AS input_table, 'entity_record' AS mart_table, count(*) AS visible_rows FROM vis_person_record
UNION ALL SELECT 'identifier', 'entity_identifier', count(*) FROM vis_identifier
UNION ALL SELECT 'phone', 'entity_phone', count(*) FROM vis_phone
UNION ALL SELECT 'account', 'entity_account', count(*) FROM vis_account
UNION ALL SELECT 'event', 'entity_event', count(*) FROM vis_event
UNION ALL SELECT 'person_name', 'entity_name', count(*) FROM vis_person_name;
COMMENT ON TABLE mart_input IS 'Rows of each staged input table visible to this audience; the mart tables must hold exactly as many (see mart_check).';
COMMENT ON COLUMN mart_input.input_table IS 'Staged input table (or the resolver''s links).';
COMMENT ON COLUMN mart_input.mart_table IS 'Mart table that must hold its rows.';
COMMENT ON COLUMN mart_input.visible_rows IS 'Rows of the input this audience may see.';

-- Records of the resolution this audience may not see. The mart is built from the audience's
-- own resolution (fusionlake.pipeline.resolve: one per visibility group, over its visible rows
-- alone), which never holds one: step 90 refuses to publish a mart whose resolution does, as its
-- entities, links and history would then be derived from rows the audience may not see.
CREATE TABLE mart_resolution_check AS
SELECT count(*) AS hidden_records FROM (
SELECT record_id FROM in_entity_record
WHERE record_id IN (SELECT record_id FROM hidden_record)
UNION
SELECT record_id_l FROM in_record_link WHERE record_id_l IN (SELECT record_id FROM hidden_record)
UNION
SELECT record_id_r FROM in_record_link WHERE record_id_r IN (SELECT record_id FROM hidden_record)
UNION
SELECT record_id_l FROM in_review_pair WHERE record_id_l IN (SELECT record_id FROM hidden_record)
UNION
SELECT record_id_r FROM in_review_pair WHERE record_id_r IN (SELECT record_id FROM hidden_record)
UNION
SELECT record_id FROM in_record_fact WHERE record_id IN (SELECT record_id FROM hidden_record)
);
COMMENT ON TABLE mart_resolution_check IS 'Records of the resolution this mart was built from that its audience may not see: 0, or the mart is not published (see mart_check).';
COMMENT ON COLUMN mart_resolution_check.hidden_records IS 'How many: 0 in every published mart.';
