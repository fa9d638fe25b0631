-- Which persons became known to two or more agencies through a merge since the previous mart version?
SELECT e.entity_id, e.display_name, e.agencies, h.old_entity_id, h.reason, h.changed_at
FROM entity_history AS h
JOIN entity AS e ON e.entity_id = h.new_entity_id
WHERE h.change = 'merge'
  AND e.agency_count >= 2
  AND h.changed_at > coalesce((SELECT previous_built_at FROM mart_info), '-infinity'::TIMESTAMPTZ)
ORDER BY h.changed_at DESC, e.entity_id, h.old_entity_id;
