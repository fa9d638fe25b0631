-- Which suspects wanted in China (cn_mps/suspects) were detained in Myanmar or Thailand, where and when last, and is each still held or already repatriated?
-- One row per person: the latest detention abroad, and status 'repatriated' when a repatriation
-- is recorded on or after it, else 'detained' (no repatriation recorded since).
WITH wanted AS (
    SELECT entity_id, list(DISTINCT case_ref ORDER BY case_ref) AS cn_case_refs,
           min(event_date) AS wanted_since
    FROM entity_event
    WHERE agency = 'cn_mps' AND feed = 'suspects'
    GROUP BY entity_id
),
detained AS (  -- latest detention or arrest in MM or TH; ties broken by record id
    SELECT entity_id, count(*) AS detentions,
           arg_max(agency, (event_date, record_id)) AS detained_by,
           arg_max(country, (event_date, record_id)) AS detained_in,
           max(event_date) AS detained_on,
           arg_max(compound, (event_date, record_id)) AS compound,
           arg_max(place, (event_date, record_id)) AS place,
           arg_max(record_id, (event_date, record_id)) AS detention_record_id
    FROM entity_event
    WHERE event_type IN ('detention', 'arrest') AND country IN ('MM', 'TH')
    GROUP BY entity_id
),
repatriated AS (
    SELECT d.entity_id, min(r.event_date) AS repatriated_on
    FROM detained AS d
    JOIN entity_event AS r
      ON r.entity_id = d.entity_id AND r.event_type = 'repatriation'
     AND (r.event_date >= d.detained_on OR r.event_date IS NULL OR d.detained_on IS NULL)
    GROUP BY d.entity_id
)
SELECT e.entity_id, e.display_name, w.cn_case_refs, w.wanted_since, d.detained_by, d.detained_in,
       d.detained_on, d.compound, d.place, d.detentions, d.detention_record_id,
       CASE WHEN r.entity_id IS NULL THEN 'detained' ELSE 'repatriated' END AS status,
       r.repatriated_on
FROM wanted AS w
JOIN detained AS d USING (entity_id)
JOIN entity AS e USING (entity_id)
LEFT JOIN repatriated AS r USING (entity_id)
ORDER BY d.detained_on DESC, e.entity_id;
