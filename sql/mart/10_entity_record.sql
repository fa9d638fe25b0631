-- Step 10: one row per visible person record, with the entity it was resolved to.
-- A LEFT JOIN keeps records the resolver missed (entity_id NULL) so that step 90 fails loudly
-- instead of the record silently disappearing from the mart.
--
-- In an agency's mart an entity is only what its visible records and visible record links
-- hold together: when two visible records were joined only through a record the audience may
-- not see, showing them as one person would reveal that record. So, unless the audience sees
-- every row (full_view, step 00), the resolver's entity is split into the connected components of its visible record links; the
-- component holding the smallest record id keeps the entity id, the others get an opaque new
-- id (md5 of the entity id and their smallest record id: stable across builds).

CREATE TEMP TABLE resolved AS
SELECT DISTINCT er.entity_id, er.record_id
FROM in_entity_record AS er
WHERE er.record_id IN (SELECT record_id FROM vis_person_record);

CREATE TEMP TABLE visible_edge AS
SELECT l.record_id_l AS a, l.record_id_r AS b
FROM in_record_link AS l
JOIN resolved AS ra ON ra.record_id = l.record_id_l
JOIN resolved AS rb ON rb.record_id = l.record_id_r AND rb.entity_id = ra.entity_id
WHERE NOT getvariable('full_view');

-- Label propagation: every record takes the smallest record id it is connected to. USING KEY
-- keeps one row per record, so each round touches only the labels that changed.
CREATE TEMP TABLE component AS
WITH RECURSIVE cc(record_id, label) USING KEY (record_id) AS (
    SELECT record_id, record_id FROM resolved
    WHERE NOT getvariable('full_view')
      AND entity_id IN (SELECT entity_id FROM resolved GROUP BY entity_id HAVING count(*) > 1)
    UNION
    (SELECT nb.b, min(cc.label)
     FROM cc
     JOIN (SELECT a, b FROM visible_edge UNION ALL SELECT b, a FROM visible_edge) AS nb
       ON nb.a = cc.record_id
     JOIN recurring.cc AS cur ON cur.record_id = nb.b
     GROUP BY nb.b, cur.label
     HAVING min(cc.label) < cur.label)
)
SELECT record_id, label FROM cc;

CREATE TEMP TABLE shown_entity AS
WITH labelled AS (
    SELECT r.entity_id, r.record_id, coalesce(c.label, r.record_id) AS label
    FROM resolved AS r LEFT JOIN component AS c USING (record_id)
),
first_label AS (
    SELECT entity_id, min(label) AS label FROM labelled GROUP BY entity_id
)
SELECT l.record_id, l.entity_id AS resolved_entity_id,
       CASE WHEN l.label = f.label OR getvariable('full_view') THEN l.entity_id
            ELSE 'E' || substr(md5(l.entity_id || '|' || l.label), 1, 16) END AS entity_id
FROM labelled AS l JOIN first_label AS f USING (entity_id);

-- Resolver entity -> entity as shown in this mart (several when split).
CREATE TEMP TABLE entity_map AS
SELECT DISTINCT resolved_entity_id, entity_id FROM shown_entity;

CREATE TEMP VIEW drop_file AS
SELECT drop_id, any_value(file_name) AS file_name, min(received_at) AS received_at
FROM in_drop_ledger
GROUP BY drop_id;

CREATE TABLE entity_record AS
SELECT
    er.entity_id,
    p.record_id,
    p.agency,
    p.feed,
    p.source_key,
    p.drop_id,
    p.source_row,
    d.file_name,
    d.received_at,
    p.role,
    p.name_original,
    p.name_original_raw,
    p.name_script,
    p.name_latin,
    p.family_name,
    p.given_name,
    p.name_key_sorted,
    p.name_key_phonetic,
    p.sex,
    p.birth_date,
    p.birth_date_precision,
    p.nationality,
    p.normalise_notes,
    p.releasable_to
FROM vis_person_record AS p
-- a record the resolver put in two entities comes out twice: step 90 reports it
LEFT JOIN shown_entity AS er USING (record_id)
LEFT JOIN drop_file AS d USING (drop_id)
ORDER BY er.entity_id, p.record_id;

COMMENT ON TABLE entity_record IS 'One row per person record received from an agency, with the entity it was resolved to and its provenance (agency, feed, drop, source row).';
COMMENT ON COLUMN entity_record.entity_id IS 'The resolved entity (person) this record belongs to; stable across runs.';
COMMENT ON COLUMN entity_record.record_id IS 'Stable id of the source row: <drop_id>:<source_row>.';
COMMENT ON COLUMN entity_record.source_key IS 'Value of the key column named by the feed definition: the row''s id at the agency.';
COMMENT ON COLUMN entity_record.drop_id IS 'The drop (file delivery) the row came from; derived from the file''s content hash. See drop_ledger.';
COMMENT ON COLUMN entity_record.source_row IS '1-based data row number in the raw file (header not counted).';
COMMENT ON COLUMN entity_record.file_name IS 'Name of the delivered file, from the drop ledger (NULL when the ledger does not know the drop).';
COMMENT ON COLUMN entity_record.received_at IS 'When the lake first received the drop.';
COMMENT ON COLUMN entity_record.role IS 'suspect, victim, detainee, returnee, ...: what the agency says this person is.';
COMMENT ON COLUMN entity_record.name_original IS 'Name as written by the agency (Zawgyi converted to Unicode).';
COMMENT ON COLUMN entity_record.name_original_raw IS 'Name as received when it differs from name_original (Zawgyi); else NULL.';
COMMENT ON COLUMN entity_record.name_script IS 'Script of name_original: Han, Thai, Myanmar, Latin or Other.';
COMMENT ON COLUMN entity_record.name_latin IS 'Latin transliteration, upper case, FAMILY GIVEN.';
COMMENT ON COLUMN entity_record.name_key_sorted IS 'Name tokens sorted and joined: equal for the same name in either order.';
COMMENT ON COLUMN entity_record.name_key_phonetic IS 'Phonetic key of the sorted tokens: equal across spelling variants.';
COMMENT ON COLUMN entity_record.birth_date IS 'Birth date; the first day of the known period when birth_date_precision is month or year.';
COMMENT ON COLUMN entity_record.birth_date_precision IS 'day, month or year.';
COMMENT ON COLUMN entity_record.nationality IS 'ISO 3166-1 alpha-2.';
COMMENT ON COLUMN entity_record.normalise_notes IS 'Why a field of this row could not be normalised.';
COMMENT ON COLUMN entity_record.releasable_to IS 'Agencies this row may be shown to.';
