-- Step 10: one row per visible person record, with the entity it was resolved to.
-- A LEFT JOIN keeps records the resolver missed (entity_id NULL) so that step 90 fails loudly
-- instead of the record silently disappearing from the mart.
--
-- The resolution is this audience's own (resolved from the rows it may see alone), so its
-- entities, ids and links are shown as they are: none was derived from a hidden record, and no
-- entity needs splitting or re-labelling here.

-- One file name per drop: its first delivery's. A later delivery of the same bytes (a
-- duplicate row of the ledger, possibly by another agency under another name) is listed in
-- drop_ledger but never names the drop.
CREATE TEMP VIEW drop_file AS
SELECT drop_id, any_value(file_name) AS file_name, min(received_at) AS received_at
FROM in_drop_ledger
WHERE state IS DISTINCT FROM 'duplicate'
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
LEFT JOIN in_entity_record AS er USING (record_id)
LEFT JOIN drop_file AS d USING (drop_id)
ORDER BY er.entity_id, p.record_id;

COMMENT ON TABLE entity_record IS 'One row per person record received from an agency, with the entity it was resolved to and its provenance (agency, feed, drop, source row).';
COMMENT ON COLUMN entity_record.entity_id IS 'The resolved entity (person) this record belongs to; stable across runs.';
COMMENT ON COLUMN entity_record.record_id IS 'Stable id of the source row: <drop_id>:<source_row>.';
COMMENT ON COLUMN entity_record.agency IS 'Agency that sent the record (cn_mps, th_imm, mm_police, ...).';
COMMENT ON COLUMN entity_record.feed IS 'The agency''s feed it came in (suspects, detentions, ...): feeds/<agency>/<feed>.yaml defines it.';
COMMENT ON COLUMN entity_record.source_key IS 'Value of the key column named by the feed definition: the row''s id at the agency.';
COMMENT ON COLUMN entity_record.drop_id IS 'The drop (file delivery) the row came from; derived from the file''s content hash. See drop_ledger.';
COMMENT ON COLUMN entity_record.source_row IS '1-based data row number in the raw file (header not counted).';
COMMENT ON COLUMN entity_record.file_name IS 'Name of the delivered file, from the drop ledger (NULL when the ledger does not know the drop).';
COMMENT ON COLUMN entity_record.received_at IS 'When the lake first received the drop.';
COMMENT ON COLUMN entity_record.role IS 'suspect, victim, detainee, returnee, ...: what the agency says this person is.';
COMMENT ON COLUMN entity_record.name_original IS 'Name as written by the agency (Zawgyi converted to Unicode).';
COMMENT ON COLUMN entity_record.name_original_raw IS 'Name as received when it differs from name_original (Zawgyi); else NULL.';
COMMENT ON COLUMN entity_record.name_script IS 'Script of name_original: Han, Thai, Lao, Myanmar, Latin or Other (Other has no Latin form: display_name then falls back).';
COMMENT ON COLUMN entity_record.name_latin IS 'Latin transliteration, upper case, FAMILY GIVEN.';
COMMENT ON COLUMN entity_record.family_name IS 'Family name part of name_latin (NULL when the feed gives no order and it cannot be told).';
COMMENT ON COLUMN entity_record.given_name IS 'Given name part of name_latin.';
COMMENT ON COLUMN entity_record.name_key_sorted IS 'Name tokens sorted and joined: equal for the same name in either order.';
COMMENT ON COLUMN entity_record.name_key_phonetic IS 'Phonetic key of the sorted tokens: equal across spelling variants.';
COMMENT ON COLUMN entity_record.birth_date IS 'Birth date; the first day of the known period when birth_date_precision is month or year.';
COMMENT ON COLUMN entity_record.birth_date_precision IS 'day, month or year.';
COMMENT ON COLUMN entity_record.sex IS 'M or F as the agency states it (NULL when not given).';
COMMENT ON COLUMN entity_record.nationality IS 'ISO 3166-1 alpha-2.';
COMMENT ON COLUMN entity_record.normalise_notes IS 'Why a field of this row could not be normalised.';
COMMENT ON COLUMN entity_record.releasable_to IS 'Agencies this row may be shown to.';
