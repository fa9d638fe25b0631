-- Step 40: the explained links between records and between entities.
--
-- Entity links come from the resolver (which pairs to connect, and through what), but the mart
-- re-derives everything it shows about them from the visible records: a link is kept only when
-- both entities hold the shared value in a record this audience may see, its evidence lists
-- those records only, and its weight and hub flag count visible holders only. So an agency's
-- mart never reveals that another agency's record shares the number.

-- Compression. The JSON evidence columns (entity_link, record_link, and review_queue in step
-- 50) are declared zstd, so these tables are created with their columns, then filled: zstd
-- makes them a quarter of the size of DuckDB's own choice (FSST) and builds faster, with scans
-- as fast (bench/RESULTS.md). The other columns keep DuckDB's choice: zstd on every string made
-- the mart larger.

-- What an entity link is made of, as macros: the one definition of the values entities share
-- and of a link's weight, called here and by the in-place update (sql/mart/update/), which asks
-- the previous mart the same question. A table macro reads the tables of whichever database is
-- current when it is called.

-- Every (entity, via, value) a visible record holds, in the vocabulary of entity_link.via.
CREATE OR REPLACE TEMP MACRO entity_values() AS TABLE
SELECT entity_id, 'phone' AS via, e164 AS value, record_id
FROM entity_phone WHERE e164 <> '' AND entity_id IS NOT NULL
UNION ALL
SELECT entity_id, CASE WHEN kind = 'crypto_wallet' THEN 'wallet' ELSE 'account' END,
       value_normalised, record_id
FROM entity_account WHERE value_normalised <> '' AND entity_id IS NOT NULL
UNION ALL
SELECT entity_id, 'compound', compound, record_id
FROM entity_event WHERE compound <> '' AND entity_id IS NOT NULL
UNION ALL
SELECT entity_id, 'case', case_ref, record_id
FROM entity_event WHERE case_ref <> '' AND entity_id IS NOT NULL;

-- A link's weight: inverse document frequency over the mart's entities (at least 2, so that the
-- logarithm never divides by zero). A value two of a million share weighs ~0.95, one everyone
-- shares 0. It depends on how many entities the mart holds, so an in-place update that adds
-- entities re-weighs every link with it.
CREATE OR REPLACE TEMP MACRO link_weight(entity_count, shared_by) AS
    greatest(least(ln(greatest(entity_count, 2)::DOUBLE / shared_by)
                   / ln(greatest(entity_count, 2)::DOUBLE), 1.0), 0.0);

-- Whether a value is a hub: held by more entities than hub_min, the resolver's
-- ResolveSettings.hub_min_entities (fusionlake.pipeline.marts sets it; mart_info records it).
CREATE OR REPLACE TEMP MACRO link_is_hub(shared_by) AS
    shared_by > CAST(getvariable('hub_min') AS INTEGER);

-- The rows of entity_link are made in four statements over temp tables, each reading the one
-- before through a table macro: the in-place update calls the same macros over the links it
-- builds again (sql/mart/update/20_links.sql). (A macro is defined once the tables it reads
-- exist: DuckDB checks that they do.)

-- Each holder's records of a value.
CREATE TEMP TABLE entity_value AS
FROM entity_values();

CREATE OR REPLACE TEMP MACRO value_holders() AS TABLE
SELECT via, value, entity_id, list(DISTINCT record_id ORDER BY record_id) AS record_ids
FROM entity_value
GROUP BY ALL;

CREATE TEMP TABLE entity_value_holder AS
FROM value_holders();

-- shared_by: how many entities hold each value (the in-place update counts them the same way).
CREATE TEMP TABLE value_holder_count AS
SELECT via, value, count(*) AS shared_by
FROM entity_value_holder
GROUP BY ALL;

-- The resolver's links between entities (of this audience's own resolution).
CREATE OR REPLACE TEMP MACRO resolver_links() AS TABLE
SELECT DISTINCT r.entity_id_l, r.entity_id_r, r.via, r.value
FROM in_entity_link AS r
WHERE r.entity_id_l <> r.entity_id_r;

CREATE TEMP TABLE link_candidate AS
FROM resolver_links();

-- One side at a time, in separate statements: joined in one query, the optimizer may pair the
-- two holder lists on (via, value) first -- every pair of holders of a compound, which ran out
-- of memory on 200,000 people. So the left side is stored first (link_left) ...
CREATE OR REPLACE TEMP MACRO link_left_records() AS TABLE
SELECT l.*, h.record_ids AS records_l
FROM link_candidate AS l
JOIN entity_value_holder AS h
  ON h.entity_id = l.entity_id_l AND h.via = l.via AND h.value = l.value;

CREATE TEMP TABLE link_left AS
FROM link_left_records();

-- ... then each link's row, weighed over entity_count entities. A link is kept only when both
-- entities hold the value in a visible record (the joins).
CREATE OR REPLACE TEMP MACRO entity_link_rows(entity_count) AS TABLE
SELECT
    l.entity_id_l,
    l.entity_id_r,
    l.via,
    l.value,
    link_weight(entity_count, c.shared_by) AS weight,
    link_is_hub(c.shared_by) AS is_hub,
    c.shared_by,
    json_object('l', l.records_l, 'r', h.record_ids) AS evidence
FROM link_left AS l
JOIN entity_value_holder AS h
  ON h.entity_id = l.entity_id_r AND h.via = l.via AND h.value = l.value
JOIN value_holder_count AS c ON c.via = l.via AND c.value = l.value;

CREATE TABLE entity_link (
    entity_id_l VARCHAR, entity_id_r VARCHAR, via VARCHAR, value VARCHAR, weight DOUBLE,
    is_hub BOOLEAN, shared_by BIGINT, evidence JSON USING COMPRESSION zstd
);
INSERT INTO entity_link
FROM entity_link_rows((SELECT count(*) FROM entity))
ORDER BY entity_id_l, entity_id_r, via, value;

-- How many resolver links the mart should show: step 90 checks none was lost.
INSERT INTO mart_input
SELECT 'entity_link (resolver)', 'entity_link', count(*) FROM link_candidate;

COMMENT ON TABLE entity_link IS 'Entity-to-entity edges through a shared phone, account, wallet, compound or case: the network analysts explore. Association, not identity: linked entities are different people.';
COMMENT ON COLUMN entity_link.via IS 'What they share: phone, account, wallet, compound or case.';
COMMENT ON COLUMN entity_link.entity_id_l IS 'One entity of the pair: entity.entity_id.';
COMMENT ON COLUMN entity_link.entity_id_r IS 'The other entity of the pair.';
COMMENT ON COLUMN entity_link.value IS 'The shared value (E.164 number, normalised account or wallet, compound name, case number).';
COMMENT ON COLUMN entity_link.weight IS 'ln(N / shared_by) / ln(N), N = entities in this mart: 1 for a rare shared value, 0 for one everybody holds.';
COMMENT ON COLUMN entity_link.is_hub IS 'True when shared_by > mart_info.hub_min: a hub (call centre number, compound), not a personal tie. The resolver links hub holders as a star around the smallest entity id instead of every pair.';
COMMENT ON COLUMN entity_link.shared_by IS 'How many entities of this mart hold the value.';
COMMENT ON COLUMN entity_link.evidence IS 'JSON {"l": [record_id...], "r": [record_id...]}: the records on each side that hold the value.';

-- Record links. The values compared are each record's, not the link's: they are kept once per
-- record (record_fact) and joined into a link's evidence as it is read (the record_link view),
-- instead of being written again into every link of a record (at a million people, 890 MB of
-- JSON made by one statement of 8 s, a sixth of the build's steps; bench/RESULTS.md).
CREATE TABLE record_fact AS
SELECT f.*
FROM in_record_fact AS f
SEMI JOIN entity_record USING (record_id)
ORDER BY record_id;
COMMENT ON TABLE record_fact IS 'The values the resolver compared for each person record (its effective birth date and identity documents, with its provenance): what record_link.evidence shows for each side of a link.';
COMMENT ON COLUMN record_fact.record_id IS 'entity_record.record_id.';
COMMENT ON COLUMN record_fact.agency IS 'Agency that sent the record.';
COMMENT ON COLUMN record_fact.feed IS 'The agency''s feed it came in.';
COMMENT ON COLUMN record_fact.drop_id IS 'The drop the row came from (drop_ledger).';
COMMENT ON COLUMN record_fact.source_row IS '1-based data row number in the raw file.';
COMMENT ON COLUMN record_fact.name_original IS 'The name as compared, in its original script.';
COMMENT ON COLUMN record_fact.name_latin IS 'The name in Latin letters.';
COMMENT ON COLUMN record_fact.birth_date IS 'The birth date compared: a valid identity document''s where it tells more than the date column.';
COMMENT ON COLUMN record_fact.birth_date_precision IS 'day, month or year: how much of birth_date is known.';
COMMENT ON COLUMN record_fact.sex IS 'M, F or NULL.';
COMMENT ON COLUMN record_fact.nationality IS 'ISO 3166-1 alpha-2.';
COMMENT ON COLUMN record_fact.national_id IS 'The national identity number compared (normalised).';
COMMENT ON COLUMN record_fact.passport_no IS 'The passport number compared (normalised).';
COMMENT ON COLUMN record_fact.other_id IS 'Another identity document number compared (normalised).';

-- A link's own evidence (the identifiers shared, each comparison's weight). A resolution
-- written before record_fact existed kept each record's values in every link's evidence (as
-- "l" and "r"): the view takes them from there.
CREATE TABLE record_link_base (
    record_id_l VARCHAR, record_id_r VARCHAR, entity_id VARCHAR, rule VARCHAR,
    match_probability DOUBLE, match_weight DOUBLE, agreed VARCHAR[], disagreed VARCHAR[],
    evidence JSON USING COMPRESSION zstd
);
INSERT INTO record_link_base
SELECT l.record_id_l, l.record_id_r, rl.entity_id AS entity_id, l.rule, l.match_probability,
       l.match_weight, l.agreed, l.disagreed, l.evidence
FROM in_record_link AS l
-- Nothing is filtered: a link naming a record not in entity_record fails the orphan check of
-- step 90 instead of vanishing.
LEFT JOIN entity_record AS rl ON rl.record_id = l.record_id_l
ORDER BY l.record_id_l, l.record_id_r;
COMMENT ON TABLE record_link_base IS 'The rows of the record_link view without the records'' values (record_fact): read record_link.';
COMMENT ON COLUMN record_link_base.record_id_l IS 'record_link.record_id_l.';
COMMENT ON COLUMN record_link_base.record_id_r IS 'record_link.record_id_r.';
COMMENT ON COLUMN record_link_base.entity_id IS 'record_link.entity_id.';
COMMENT ON COLUMN record_link_base.rule IS 'record_link.rule.';
COMMENT ON COLUMN record_link_base.match_probability IS 'record_link.match_probability.';
COMMENT ON COLUMN record_link_base.match_weight IS 'record_link.match_weight.';
COMMENT ON COLUMN record_link_base.agreed IS 'record_link.agreed.';
COMMENT ON COLUMN record_link_base.disagreed IS 'record_link.disagreed.';
COMMENT ON COLUMN record_link_base.evidence IS 'JSON {"identifiers": ..., "weights": {...}}: the link''s own evidence, without the records'' values.';

-- Each side's values are packed after the join, so a query for a few links packs only theirs.
-- The two sides' subqueries are written out, not one CTE read twice: DuckDB materialises
-- such a CTE, packing every record's values for a query of one link (twice as slow at
-- 100k people; bench/RESULTS.md).
CREATE VIEW record_link AS
SELECT l.record_id_l, l.record_id_r, l.entity_id, l.rule, l.match_probability,
       l.match_weight, l.agreed, l.disagreed,
       json_object('l', coalesce(to_json(fl.facts), l.evidence -> 'l'),
                   'r', coalesce(to_json(fr.facts), l.evidence -> 'r'),
                   'identifiers', l.evidence -> 'identifiers',
                   'weights', l.evidence -> 'weights')::VARCHAR AS evidence
FROM record_link_base AS l
LEFT JOIN (SELECT record_id, struct_pack(*COLUMNS(* EXCLUDE (record_id))) AS facts
           FROM record_fact) AS fl ON fl.record_id = l.record_id_l
LEFT JOIN (SELECT record_id, struct_pack(*COLUMNS(* EXCLUDE (record_id))) AS facts
           FROM record_fact) AS fr ON fr.record_id = l.record_id_r;
COMMENT ON VIEW record_link IS 'Why records were put in the same entity: one row per pair the resolver linked, with the rule, probability and fields that agreed.';
COMMENT ON COLUMN record_link.entity_id IS 'Entity of record_id_l.';
COMMENT ON COLUMN record_link.record_id_l IS 'One record of the linked pair: entity_record.record_id.';
COMMENT ON COLUMN record_link.record_id_r IS 'The other record of the pair.';
COMMENT ON COLUMN record_link.rule IS 'identifier (a shared valid identity document), probabilistic (Splink model) or steward (a human decision).';
COMMENT ON COLUMN record_link.match_probability IS 'Model probability that the two records are the same person (1 for identifier and steward links).';
COMMENT ON COLUMN record_link.match_weight IS 'Splink match weight (log2 Bayes factor).';
COMMENT ON COLUMN record_link.agreed IS 'Fields that agreed.';
COMMENT ON COLUMN record_link.disagreed IS 'Fields that disagreed.';
COMMENT ON COLUMN record_link.evidence IS 'JSON: the values compared of each record ("l", "r": their record_fact rows, with the drop each came from), the identifiers shared and each comparison''s weight.';
