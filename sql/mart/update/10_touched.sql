-- Update step 10: what an incremental resolution touched, and which records the mart's steps
-- must be re-run over.
--
-- An in-place update (fusionlake.pipeline.marts, "In-place updates") runs on a copy of the
-- previous mart, attached as `mart`. It registers the resolution's delta as update_delta
-- (record_id, entity_id_before, entity_id_after: the contract of resolution_delta) and every
-- full input as a view src_<table>. The numbered steps of sql/mart/ then run again over inputs
-- restricted to the records chosen here (in_<table> views over load_<table>), update step 20
-- works out the entity links via the values they hold, and update step 40 replaces the touched
-- rows of the mart with theirs.

-- Entities the delta touched, as they were (in the previous mart) and as they are.
CREATE TEMP TABLE touched_entity AS
SELECT entity_id_before AS entity_id FROM update_delta WHERE entity_id_before IS NOT NULL
UNION
SELECT entity_id_after FROM update_delta WHERE entity_id_after IS NOT NULL;

-- Records whose rows are replaced: the delta's, and every record of a touched entity before
-- and after (the delta lists them all; reading them again costs little and keeps a short delta
-- from leaving half an entity behind).
CREATE TEMP TABLE touched_record AS
SELECT record_id FROM update_delta
UNION
SELECT record_id FROM mart.entity_record SEMI JOIN touched_entity USING (entity_id)
UNION
SELECT record_id FROM src_entity_record SEMI JOIN touched_entity USING (entity_id);

-- Records the previous mart did not hold: the rows they add are what the row-count checks of
-- step 90 must find added (update step 30).
CREATE TEMP TABLE new_record AS
SELECT record_id FROM touched_record ANTI JOIN mart.entity_record USING (record_id);

-- Records whose staged rows the steps read: the touched ones, and the other side of every
-- record link and review pair of a touched record (the review queue shows both records' entity
-- and name).
CREATE TEMP TABLE load_record AS
SELECT record_id FROM touched_record
UNION
SELECT record_id_r FROM src_record_link SEMI JOIN touched_record ON record_id = record_id_l
UNION
SELECT record_id_l FROM src_record_link SEMI JOIN touched_record ON record_id = record_id_r
UNION
SELECT record_id_r FROM src_review_pair SEMI JOIN touched_record ON record_id = record_id_l
UNION
SELECT record_id_l FROM src_review_pair SEMI JOIN touched_record ON record_id = record_id_r;

-- The shared values whose links are looked at again (filled by update step 20, from what the
-- steps found; empty while they run, so in_entity_link holds no link then).
CREATE TEMP TABLE touched_value (via VARCHAR, value VARCHAR);
