-- Which persons are known to two or more agencies for the first time in this mart version (the run summary's "new cross-agency matches"; on a first run, every one)?
-- entity.new_cross_agency_match is the summary's rule (sql/mart/30_entity.sql): no entity of the
-- previous resolution that held one of the person's records held records of two of the person's
-- agencies together (records an agency has since corrected count). The history since
-- the previous mart says how the records came together (merged_from is empty when every record
-- of the person is new, or new records joined an existing entity).
WITH since_previous AS (
    SELECT new_entity_id AS entity_id,
           list(DISTINCT old_entity_id ORDER BY old_entity_id)
               FILTER (WHERE change = 'merge') AS merged_from,
           list(DISTINCT reason ORDER BY reason) AS how,
           max(changed_at) AS changed_at
    FROM entity_history
    WHERE changed_at > coalesce((SELECT previous_built_at FROM mart_info), '-infinity'::TIMESTAMPTZ)
    GROUP BY new_entity_id
)
SELECT e.entity_id, e.display_name, e.agencies, e.roles, e.record_count,
       coalesce(s.merged_from, []) AS merged_from, coalesce(s.how, []) AS how, s.changed_at
FROM entity AS e
LEFT JOIN since_previous AS s USING (entity_id)
WHERE e.new_cross_agency_match
ORDER BY e.entity_id;
