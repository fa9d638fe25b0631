-- Update step 30: what the row-count checks of step 90 must find after the update.
--
-- mart_input holds, per staged input, the rows the audience may see, and the checks compare the
-- mart's tables with it. The rows of untouched records are the previous mart's, which passed
-- those checks; the new records add their visible rows (vis_* of the steps over the touched
-- records, the same rule as step 00). The resolver's links are the previous count, less the
-- links update step 40 deletes, plus the resolver's links via a touched value now (update step
-- 20) but those it keeps: so a link lost by the update, or a record it left out, fails the
-- checks as it would fail a full build.

CREATE TEMP TABLE added_input AS
SELECT 'person_record' AS input_table,
       (SELECT count(*) FROM vis_person_record SEMI JOIN new_record USING (record_id)) AS n
UNION ALL SELECT 'identifier',
       (SELECT count(*) FROM vis_identifier SEMI JOIN new_record USING (record_id))
UNION ALL SELECT 'phone', (SELECT count(*) FROM vis_phone SEMI JOIN new_record USING (record_id))
UNION ALL SELECT 'account',
       (SELECT count(*) FROM vis_account SEMI JOIN new_record USING (record_id))
UNION ALL SELECT 'event', (SELECT count(*) FROM vis_event SEMI JOIN new_record USING (record_id))
UNION ALL SELECT 'person_name',
       (SELECT count(*) FROM vis_person_name SEMI JOIN new_record USING (record_id))
UNION ALL SELECT 'entity_link (resolver)',
       (SELECT count(*) FROM touched_link ANTI JOIN kept_link
            USING (entity_id_l, entity_id_r, via, value))
       - (SELECT count(*) FROM dropped_link);
