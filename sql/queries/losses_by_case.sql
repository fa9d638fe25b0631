-- For each case with fraud reports, how much did victims lose and which wanted suspects share the case number?
WITH losses AS (
    SELECT case_ref, count(DISTINCT entity_id) AS victims, sum(amount) AS total_amount,
           list(DISTINCT currency) AS currencies
    FROM entity_event
    WHERE event_type = 'fraud_report' AND case_ref IS NOT NULL
    GROUP BY case_ref
),
suspects AS (
    SELECT w.case_ref, list(DISTINCT e.display_name ORDER BY e.display_name) AS suspect_names,
           list(DISTINCT e.entity_id ORDER BY e.entity_id) AS suspect_entity_ids
    FROM entity_event AS w JOIN entity AS e USING (entity_id)
    WHERE w.event_type = 'wanted' AND w.case_ref IS NOT NULL
    GROUP BY w.case_ref
)
SELECT l.case_ref, l.victims, l.total_amount, l.currencies, s.suspect_entity_ids, s.suspect_names
FROM losses AS l
LEFT JOIN suspects AS s USING (case_ref)
ORDER BY l.total_amount DESC NULLS LAST, l.case_ref;
