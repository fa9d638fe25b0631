-- Which suspects wanted in China (cn_mps/suspects) are now detained in Myanmar or Thailand, and where?
SELECT
    e.entity_id,
    e.display_name,
    w.case_ref AS cn_case_ref,
    w.event_date AS wanted_since,
    d.agency AS detained_by,
    d.country AS detained_in,
    d.event_date AS detained_on,
    d.compound,
    d.place,
    d.record_id AS detention_record_id
FROM entity AS e
JOIN entity_event AS w
  ON w.entity_id = e.entity_id AND w.agency = 'cn_mps' AND w.feed = 'suspects'
JOIN entity_event AS d
  ON d.entity_id = e.entity_id AND d.event_type IN ('detention', 'arrest')
 AND d.country IN ('MM', 'TH')
ORDER BY d.event_date DESC, e.entity_id;
