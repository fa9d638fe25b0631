-- Update step 20: the entity links via the values the touched entities hold, before or after.
--
-- An entity link via a value depends on every entity holding it: how many hold it (shared_by,
-- is_hub, weight), which records on each side hold it (evidence), and which holders the resolver
-- chose to link (a hub is linked as a star around its smallest entity id, a smaller value as
-- every pair). So every link via a touched value is looked at again, but what it costs follows
-- the touched entities and values, not all holders of those values (a compound's or a case's
-- may be most of the mart):
--   * an untouched entity's records, and so the records it holds a value in, are the previous
--     mart's; only how many entities hold each touched value is counted again;
--   * a link between two untouched entities that the resolver still makes keeps its row: only
--     its shared_by, is_hub and weight may change (update step 40 sets them, by value);
--   * every other link the resolver now makes via a touched value is built by the macros of
--     step 40 (entity_link_rows), from the holders' records of that value alone.
-- The steps run over the touched records (database `scratch`) tells what the
-- touched entities hold now; the previous mart (`mart`) what they held and what the others hold.

USE scratch;  -- entity_values(): the macro of step 40
INSERT INTO touched_value
SELECT via, value FROM entity_values() SEMI JOIN touched_record USING (record_id);

USE mart;
INSERT INTO touched_value
SELECT via, value FROM entity_values() SEMI JOIN touched_entity USING (entity_id);

CREATE OR REPLACE TEMP TABLE touched_value AS SELECT DISTINCT via, value FROM touched_value;

-- Which entity holds a touched value in which record, in the updated mart: the touched entities
-- as the steps built them over the touched records, the others as the previous mart has them.
CREATE TEMP TABLE value_holding AS
SELECT entity_id, via, value, record_id
FROM entity_values()
SEMI JOIN touched_value USING (via, value)
ANTI JOIN touched_entity USING (entity_id);

USE scratch;
INSERT INTO value_holding
SELECT entity_id, via, value, record_id
FROM entity_values() SEMI JOIN touched_entity USING (entity_id);

-- shared_by of every touched value: the entities holding it, as step 40 counts them.
CREATE OR REPLACE TEMP TABLE value_holder_count AS
SELECT via, value, count(DISTINCT entity_id) AS shared_by
FROM value_holding
GROUP BY ALL;

-- The resolver's links via a touched value now (in_entity_link reads only those).
CREATE TEMP TABLE touched_link AS FROM resolver_links();

-- Links kept as they are but for shared_by, is_hub and weight: the previous mart's links via a
-- touched value between two untouched entities, which the resolver still makes. (Both entities
-- still hold the value in the same records: the previous mart's evidence stands.)
CREATE TEMP TABLE kept_link AS
SELECT entity_id_l, entity_id_r, via, value
FROM mart.entity_link SEMI JOIN touched_value USING (via, value)
WHERE entity_id_l NOT IN (SELECT entity_id FROM touched_entity)
  AND entity_id_r NOT IN (SELECT entity_id FROM touched_entity)
INTERSECT
SELECT entity_id_l, entity_id_r, via, value FROM touched_link;

-- The previous mart's links that update step 40 deletes: every other link via a touched value or
-- of a touched entity.
CREATE TEMP TABLE dropped_link AS
SELECT entity_id_l, entity_id_r, via, value
FROM mart.entity_link
WHERE (via, value) IN (SELECT (via, value) FROM touched_value)
   OR entity_id_l IN (SELECT entity_id FROM touched_entity)
   OR entity_id_r IN (SELECT entity_id FROM touched_entity)
EXCEPT
FROM kept_link;

-- Entities in the updated mart: the previous mart's, less the touched ones as they were, plus
-- the touched ones as they are. Link weights are computed over it.
CREATE TEMP TABLE entity_count_after AS
SELECT (SELECT count(*) FROM mart.entity ANTI JOIN touched_entity USING (entity_id))
     + (SELECT count(*) FROM scratch.entity SEMI JOIN touched_entity USING (entity_id)) AS n;

-- The links built again, by the macros of step 40 over the tables they read: the resolver's
-- links not kept, and the records each of their entities holds the value in.
CREATE OR REPLACE TEMP TABLE link_candidate AS
FROM touched_link EXCEPT FROM kept_link;

CREATE OR REPLACE TEMP TABLE entity_value AS
SELECT h.entity_id, h.via, h.value, h.record_id
FROM value_holding AS h
SEMI JOIN (SELECT entity_id_l AS entity_id, via, value FROM link_candidate
           UNION SELECT entity_id_r, via, value FROM link_candidate)
     USING (entity_id, via, value);

CREATE OR REPLACE TEMP TABLE entity_value_holder AS
FROM value_holders();

CREATE OR REPLACE TEMP TABLE link_left AS
FROM link_left_records();

CREATE TEMP TABLE rebuilt_link AS
FROM entity_link_rows((SELECT n FROM entity_count_after));
