-- Step 50: how entities changed between runs, and the pairs waiting for a steward.

CREATE TABLE entity_history AS
-- The history of this audience's own resolution: every merge and split in it was made from rows
-- the audience may see.
SELECT h.old_entity_id, h.new_entity_id, h.change, h.reason, h.changed_at
FROM in_entity_history AS h
ORDER BY h.changed_at, h.new_entity_id, h.old_entity_id;
COMMENT ON TABLE entity_history IS 'Merges and splits of entities between resolution runs: follow old_entity_id to new_entity_id to find where a person went.';
COMMENT ON COLUMN entity_history.old_entity_id IS 'Entity id before the change (NULL for a new entity).';
COMMENT ON COLUMN entity_history.new_entity_id IS 'Entity id after the change.';
COMMENT ON COLUMN entity_history.change IS 'merge, split or new.';
COMMENT ON COLUMN entity_history.reason IS 'Why: the link that merged them, or what split them.';
COMMENT ON COLUMN entity_history.changed_at IS 'When the resolution run that made the change ran.';

CREATE TABLE review_queue (  -- declared for its zstd evidence: see 40_links.sql
    record_id_l VARCHAR, record_id_r VARCHAR, entity_id_l VARCHAR, entity_id_r VARCHAR,
    name_l VARCHAR, name_r VARCHAR, name_latin_l VARCHAR, name_latin_r VARCHAR,
    birth_date_l DATE, birth_date_r DATE, agency_l VARCHAR, agency_r VARCHAR,
    match_probability DOUBLE, priority DOUBLE, reason VARCHAR,
    evidence VARCHAR USING COMPRESSION zstd
);
INSERT INTO review_queue
SELECT
    p.record_id_l, p.record_id_r,
    l.entity_id AS entity_id_l, r.entity_id AS entity_id_r,
    l.name_original AS name_l, r.name_original AS name_r,
    l.name_latin AS name_latin_l, r.name_latin AS name_latin_r,
    l.birth_date AS birth_date_l, r.birth_date AS birth_date_r,
    l.agency AS agency_l, r.agency AS agency_r,
    p.match_probability, p.priority, p.reason, p.evidence
FROM in_review_pair AS p
LEFT JOIN entity_record AS l ON l.record_id = p.record_id_l
LEFT JOIN entity_record AS r ON r.record_id = p.record_id_r
ORDER BY p.priority DESC, p.record_id_l, p.record_id_r;
COMMENT ON TABLE review_queue IS 'Record pairs the model could not decide, most informative first: a steward marks each same or different (decisions are replayed on every run).';
COMMENT ON COLUMN review_queue.priority IS 'Higher first: how much a decision on this pair would teach the model.';
COMMENT ON COLUMN review_queue.match_probability IS 'Model probability that the two records are the same person.';
COMMENT ON COLUMN review_queue.record_id_l IS 'One record of the pair (entity_record.record_id); decide with fusionlake decide RECORD_L RECORD_R.';
COMMENT ON COLUMN review_queue.record_id_r IS 'The other record of the pair.';
COMMENT ON COLUMN review_queue.entity_id_l IS 'Entity record_id_l is in now.';
COMMENT ON COLUMN review_queue.entity_id_r IS 'Entity record_id_r is in now.';
COMMENT ON COLUMN review_queue.name_l IS 'Name of record_id_l as written.';
COMMENT ON COLUMN review_queue.name_r IS 'Name of record_id_r as written.';
COMMENT ON COLUMN review_queue.name_latin_l IS 'Latin transliteration of name_l.';
COMMENT ON COLUMN review_queue.name_latin_r IS 'Latin transliteration of name_r.';
COMMENT ON COLUMN review_queue.birth_date_l IS 'Birth date of record_id_l.';
COMMENT ON COLUMN review_queue.birth_date_r IS 'Birth date of record_id_r.';
COMMENT ON COLUMN review_queue.agency_l IS 'Agency of record_id_l.';
COMMENT ON COLUMN review_queue.agency_r IS 'Agency of record_id_r.';
COMMENT ON COLUMN review_queue.reason IS 'Why the pair is undecided (e.g. names differ, birth dates near).';
COMMENT ON COLUMN review_queue.evidence IS 'JSON: the values compared, with the drop each came from.';
