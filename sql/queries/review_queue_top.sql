-- Which undecided record pairs should a steward review first, with both sides side by side?
SELECT record_id_l, record_id_r, name_l, name_r, birth_date_l, birth_date_r, agency_l,
       agency_r, round(match_probability, 3) AS match_probability, priority, reason
FROM review_queue
ORDER BY priority DESC, record_id_l, record_id_r
LIMIT 100;
