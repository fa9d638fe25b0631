-- Update step 20: the closure of the touched entities over shared values.
--
-- An entity link via a value depends on every entity holding it: how many hold it (shared_by,
-- is_hub, weight), which records on each side (evidence), and which holders the resolver chose
-- to link (a hub is linked as a star around its smallest entity id). So every value a touched
-- entity holds, before or after, has all its links rebuilt, from the records of every entity
-- holding it. The first pass of the steps (over the touched records, database `first`) tells
-- what the touched entities hold now; the previous mart what they held.

USE first;  -- entity_values(): the macro of step 40
INSERT INTO touched_value
SELECT via, value FROM entity_values() SEMI JOIN touched_record USING (record_id);

USE mart;
INSERT INTO touched_value
SELECT via, value FROM entity_values() SEMI JOIN touched_entity USING (entity_id);

CREATE OR REPLACE TEMP TABLE touched_value AS SELECT DISTINCT via, value FROM touched_value;

-- Records of the previous mart that hold one of those values: untouched entities' records, so
-- their entity ids and rows are the same in the new resolution.
CREATE TEMP TABLE holder_record AS
SELECT DISTINCT record_id FROM entity_values() SEMI JOIN touched_value USING (via, value)
ANTI JOIN load_record USING (record_id);
