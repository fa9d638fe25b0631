-- Which phones that called fraud victims are held by detained people, who holds them and where were they detained?
-- A calling phone is a fraud report's counterparty number; a detainee holds it when it is the
-- own number on any record of a person with a detention or arrest. One row per phone.
WITH calling AS (
    SELECT p.e164, count(DISTINCT ev.record_id) AS reports,
           count(DISTINCT ev.entity_id) AS victims, sum(ev.amount) AS total_amount,
           list(DISTINCT ev.currency ORDER BY ev.currency) AS currencies
    FROM entity_phone AS p
    JOIN entity_event AS ev ON ev.record_id = p.record_id AND ev.event_type = 'fraud_report'
    WHERE p.relation = 'counterparty' AND p.e164 IS NOT NULL
    GROUP BY p.e164
),
detainee AS (
    SELECT entity_id, list(DISTINCT agency ORDER BY agency) AS detained_by,
           list(DISTINCT coalesce(compound, place) ORDER BY coalesce(compound, place))
               FILTER (WHERE coalesce(compound, place) IS NOT NULL) AS detained_at
    FROM entity_event
    WHERE event_type IN ('detention', 'arrest')
    GROUP BY entity_id
),
held AS (
    SELECT DISTINCT p.e164, d.entity_id, d.detained_by, d.detained_at
    FROM entity_phone AS p JOIN detainee AS d USING (entity_id)
    WHERE p.relation = 'own' AND p.e164 IS NOT NULL
)
SELECT c.e164 AS phone, c.reports, c.victims, c.total_amount, c.currencies,
       list(h.entity_id ORDER BY h.entity_id) AS holder_entity_ids,
       list(e.display_name ORDER BY h.entity_id) AS holder_names,
       list_sort(list_distinct(flatten(list(h.detained_by)))) AS detained_by,
       list_sort(list_distinct(flatten(list(coalesce(h.detained_at, []))))) AS detained_at
FROM calling AS c
JOIN held AS h USING (e164)
JOIN entity AS e ON e.entity_id = h.entity_id
GROUP BY c.e164, c.reports, c.victims, c.total_amount, c.currencies
ORDER BY c.reports DESC, count(*) DESC, c.e164;
