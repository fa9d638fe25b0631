-- At which compounds were people detained or rescued, by which agencies, and how many of those people are known to more than one agency?
-- A compound is its gazetteer id (entity_event.compound_id) whatever script each agency wrote it
-- in (KK Park, เคเคปาร์ค, ကေကေပါ့ခ်); a compound not in the gazetteer is its name.
WITH at_compound AS (
    SELECT coalesce(compound_id, compound) AS compound_key, compound_id, compound,
           compound_original, event_type, entity_id, agency, event_date
    FROM entity_event
    WHERE event_type IN ('detention', 'arrest', 'rescue') AND compound IS NOT NULL
)
SELECT any_value(c.compound_id) AS compound_id,
       min(c.compound) AS compound,
       coalesce(list(DISTINCT c.compound_original ORDER BY c.compound_original)
                    FILTER (WHERE c.compound_original IS NOT NULL), []) AS spellings,
       list(DISTINCT c.agency ORDER BY c.agency) AS agencies,
       count(*) FILTER (WHERE c.event_type IN ('detention', 'arrest')) AS detentions,
       count(*) FILTER (WHERE c.event_type = 'rescue') AS rescues,
       count(DISTINCT c.entity_id) AS people,
       count(DISTINCT c.entity_id) FILTER (WHERE e.agency_count >= 2)
           AS people_known_to_several_agencies,
       min(c.event_date) AS first_date,
       max(c.event_date) AS last_date
FROM at_compound AS c
JOIN entity AS e USING (entity_id)
GROUP BY c.compound_key
ORDER BY people DESC, compound;
