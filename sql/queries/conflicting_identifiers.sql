-- Which entities carry two or more different identity documents of the same kind and issuer (wrong merge, forgery or typo)?
SELECT c.entity_id, e.display_name, c.kind, c.issuing_country, c.values_normalised,
       c.record_ids, c.agencies
FROM identifier_conflict AS c
JOIN entity AS e USING (entity_id)
ORDER BY c.entity_id, c.kind, c.issuing_country;
