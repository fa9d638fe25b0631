-- Update step 40 (one transaction, on the copy of the previous mart): the touched rows of every
-- table keyed by record or entity are replaced by the rows the steps produced over the
-- restricted inputs (database `scratch`). Untouched rows stay as they are: the resolution delta
-- promises that their entity, its records, links, review pairs and history are unchanged.

-- Tables of one row per staged row: keyed by record.
DELETE FROM mart.entity_record WHERE record_id IN (SELECT record_id FROM touched_record);
INSERT INTO mart.entity_record BY NAME
SELECT * FROM scratch.entity_record SEMI JOIN touched_record USING (record_id);

DELETE FROM mart.entity_name WHERE record_id IN (SELECT record_id FROM touched_record);
INSERT INTO mart.entity_name BY NAME
SELECT * FROM scratch.entity_name SEMI JOIN touched_record USING (record_id);

DELETE FROM mart.entity_identifier WHERE record_id IN (SELECT record_id FROM touched_record);
INSERT INTO mart.entity_identifier BY NAME
SELECT * FROM scratch.entity_identifier SEMI JOIN touched_record USING (record_id);

DELETE FROM mart.entity_phone WHERE record_id IN (SELECT record_id FROM touched_record);
INSERT INTO mart.entity_phone BY NAME
SELECT * FROM scratch.entity_phone SEMI JOIN touched_record USING (record_id);

DELETE FROM mart.entity_account WHERE record_id IN (SELECT record_id FROM touched_record);
INSERT INTO mart.entity_account BY NAME
SELECT * FROM scratch.entity_account SEMI JOIN touched_record USING (record_id);

DELETE FROM mart.entity_event WHERE record_id IN (SELECT record_id FROM touched_record);
INSERT INTO mart.entity_event BY NAME
SELECT * FROM scratch.entity_event SEMI JOIN touched_record USING (record_id);

-- Entities: every touched one as it was goes, every touched one as it is comes back.
DELETE FROM mart.entity WHERE entity_id IN (SELECT entity_id FROM touched_entity);
INSERT INTO mart.entity BY NAME
SELECT * FROM scratch.entity SEMI JOIN touched_entity USING (entity_id);

-- new_cross_agency_match compares an entity with the previous resolution (step 30). An entity
-- the delta did not touch had the same records under the same id in that resolution, so it
-- held its agencies together already: by the rule of step 30 it is no new match now.
UPDATE mart.entity SET new_cross_agency_match = false
WHERE new_cross_agency_match AND entity_id NOT IN (SELECT entity_id FROM touched_entity);

-- Entity links via a touched value (update step 20): the dropped ones go, the rebuilt ones come
-- in, and the kept ones (between untouched entities) take the value's new holder count.
DELETE FROM mart.entity_link AS l
USING dropped_link AS d
WHERE l.entity_id_l = d.entity_id_l AND l.entity_id_r = d.entity_id_r
  AND l.via = d.via AND l.value = d.value;
INSERT INTO mart.entity_link BY NAME
FROM rebuilt_link;

UPDATE mart.entity_link AS l
SET shared_by = c.shared_by, is_hub = link_is_hub(c.shared_by)
FROM value_holder_count AS c
WHERE l.via = c.via AND l.value = c.value AND l.shared_by <> c.shared_by;

-- A link's weight counts the mart's entities (link_weight): with entities added or merged, or
-- a value's holders counted again, a link is weighed again.
UPDATE mart.entity_link
SET weight = link_weight((SELECT count(*) FROM mart.entity), shared_by)
WHERE weight IS DISTINCT FROM link_weight((SELECT count(*) FROM mart.entity), shared_by);

-- The values each touched record's links show (record_link reads them as it is queried).
DELETE FROM mart.record_fact WHERE record_id IN (SELECT record_id FROM touched_record);
INSERT INTO mart.record_fact BY NAME
SELECT * FROM scratch.record_fact SEMI JOIN touched_record USING (record_id);

-- Record links and review pairs: every pair with a touched record.
DELETE FROM mart.record_link_base
WHERE record_id_l IN (SELECT record_id FROM touched_record)
   OR record_id_r IN (SELECT record_id FROM touched_record);
INSERT INTO mart.record_link_base BY NAME
SELECT * FROM scratch.record_link_base
WHERE record_id_l IN (SELECT record_id FROM touched_record)
   OR record_id_r IN (SELECT record_id FROM touched_record);

DELETE FROM mart.review_queue
WHERE record_id_l IN (SELECT record_id FROM touched_record)
   OR record_id_r IN (SELECT record_id FROM touched_record);
INSERT INTO mart.review_queue BY NAME
SELECT * FROM scratch.review_queue
WHERE record_id_l IN (SELECT record_id FROM touched_record)
   OR record_id_r IN (SELECT record_id FROM touched_record);

-- History: every change of a touched entity.
DELETE FROM mart.entity_history
WHERE old_entity_id IN (SELECT entity_id FROM touched_entity)
   OR new_entity_id IN (SELECT entity_id FROM touched_entity);
INSERT INTO mart.entity_history BY NAME
SELECT * FROM scratch.entity_history
WHERE old_entity_id IN (SELECT entity_id FROM touched_entity)
   OR new_entity_id IN (SELECT entity_id FROM touched_entity);

-- What the checks reconcile (update step 30), and the hidden-record check of the touched records.
UPDATE mart.mart_input AS m SET visible_rows = m.visible_rows + a.n
FROM added_input AS a WHERE a.input_table = m.input_table;
UPDATE mart.mart_resolution_check
SET hidden_records = hidden_records + (SELECT hidden_records FROM scratch.mart_resolution_check);
