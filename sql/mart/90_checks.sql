-- Step 90: the checks a mart must pass before it is published (fusionlake.marts.check_mart).
-- Each row is one check; failures > 0 blocks publication. Kept as a view in the file so that
-- anyone can re-run the checks on a published mart: SELECT * FROM mart_check.

CREATE VIEW mart_check AS
WITH mart_count AS (
    SELECT 'entity_record' AS mart_table, count(*) AS n FROM entity_record
    UNION ALL SELECT 'entity_identifier', count(*) FROM entity_identifier
    UNION ALL SELECT 'entity_phone', count(*) FROM entity_phone
    UNION ALL SELECT 'entity_account', count(*) FROM entity_account
    UNION ALL SELECT 'entity_event', count(*) FROM entity_event
    UNION ALL SELECT 'entity_link', count(*) FROM entity_link
    UNION ALL SELECT 'entity_name', count(*) FROM entity_name
)
SELECT 'row counts reconcile: ' || i.mart_table || ' vs staged ' || i.input_table AS check_name,
       abs(i.visible_rows - m.n) AS failures,
       i.mart_table || ' has ' || m.n || ' rows, the input has ' || i.visible_rows
           || ' visible to this audience' AS detail
FROM mart_input AS i JOIN mart_count AS m USING (mart_table)
UNION ALL
SELECT 'every record has an entity',
       count(*),
       'records without entity_id, e.g. ' || coalesce(min(record_id), '-')
FROM entity_record WHERE entity_id IS NULL
UNION ALL
SELECT 'no entity without records',
       count(*),
       'entities with no row in entity_record, e.g. ' || coalesce(min(entity_id), '-')
FROM entity
WHERE record_count = 0 OR entity_id NOT IN (SELECT entity_id FROM entity_record WHERE entity_id IS NOT NULL)
UNION ALL
SELECT 'no orphan details: ' || t, count(record_id), 'rows whose record_id is in no entity_record, e.g. ' || coalesce(min(record_id), '-')
FROM (
    SELECT 'entity_identifier' AS t, record_id FROM entity_identifier WHERE entity_id IS NULL
    UNION ALL SELECT 'entity_phone', record_id FROM entity_phone WHERE entity_id IS NULL
    UNION ALL SELECT 'entity_account', record_id FROM entity_account WHERE entity_id IS NULL
    UNION ALL SELECT 'entity_event', record_id FROM entity_event WHERE entity_id IS NULL
    UNION ALL SELECT 'entity_name', record_id FROM entity_name WHERE entity_id IS NULL
    -- one NULL row per table so that a table without orphans still reports 0
    UNION ALL SELECT * FROM (VALUES ('entity_identifier', NULL), ('entity_phone', NULL),
                                    ('entity_account', NULL), ('entity_event', NULL),
                                    ('entity_name', NULL))
) GROUP BY t
UNION ALL
SELECT 'no orphan links: entity_link', count(*), 'links naming an entity not in entity, e.g. '
       || coalesce(min(entity_id_l || ' - ' || entity_id_r), '-')
FROM entity_link
WHERE entity_id_l NOT IN (SELECT entity_id FROM entity)
   OR entity_id_r NOT IN (SELECT entity_id FROM entity)
UNION ALL
SELECT 'no orphan links: record_link', count(*), 'links naming a record not in entity_record, e.g. '
       || coalesce(min(record_id_l || ' - ' || record_id_r), '-')
FROM record_link_base  -- the rows of record_link, without packing their evidence
WHERE record_id_l NOT IN (SELECT record_id FROM entity_record)
   OR record_id_r NOT IN (SELECT record_id FROM entity_record)
UNION ALL
SELECT 'no orphan facts: record_fact', count(*), 'values of a record not in entity_record, e.g. '
       || coalesce(min(record_id), '-')
FROM record_fact
WHERE record_id NOT IN (SELECT record_id FROM entity_record)
UNION ALL
SELECT 'no orphan links: review_queue', count(*), 'pairs naming a record not in entity_record, e.g. '
       || coalesce(min(record_id_l || ' - ' || record_id_r), '-')
FROM review_queue
WHERE entity_id_l IS NULL OR entity_id_r IS NULL
UNION ALL
SELECT 'resolution holds no record hidden from this audience', hidden_records,
       'the resolution was not made from this audience''s rows alone: resolve per audience'
FROM mart_resolution_check
UNION ALL
SELECT 'ids unique: entity.entity_id', count(*) - count(DISTINCT entity_id),
       'duplicate or NULL entity ids'
FROM entity
UNION ALL
SELECT 'ids unique: entity_record.record_id', count(*) - count(DISTINCT record_id),
       'records listed twice (resolved to two entities?) or NULL record ids'
FROM entity_record;
COMMENT ON VIEW mart_check IS 'Checks the mart must pass to be published; failures > 0 means the check failed. Run SELECT * FROM mart_check WHERE failures > 0 to re-check a published mart.';
COMMENT ON COLUMN mart_check.check_name IS 'What is checked.';
COMMENT ON COLUMN mart_check.failures IS 'Rows failing the check: 0 when it passes.';
COMMENT ON COLUMN mart_check.detail IS 'What failed, with an example.';
