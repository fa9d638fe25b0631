-- Who has been detained (arrest or detention) but has no repatriation recorded after their latest detention?
WITH last_detention AS (
    SELECT entity_id, max(event_date) AS detained_on,
           arg_max(country, event_date) AS country, arg_max(compound, event_date) AS compound,
           arg_max(agency, event_date) AS detained_by
    FROM entity_event
    WHERE event_type IN ('detention', 'arrest')
    GROUP BY entity_id
)
SELECT e.entity_id, e.display_name, e.nationalities, d.detained_by, d.country, d.compound,
       d.detained_on, current_date - d.detained_on AS days_held
FROM last_detention AS d
JOIN entity AS e USING (entity_id)
WHERE NOT EXISTS (
    SELECT 1 FROM entity_event AS r
    WHERE r.entity_id = d.entity_id AND r.event_type = 'repatriation'
      AND (r.event_date >= d.detained_on OR r.event_date IS NULL OR d.detained_on IS NULL)
)
ORDER BY d.detained_on, e.entity_id;
