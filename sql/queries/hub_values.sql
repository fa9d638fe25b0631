-- Which phones, accounts, wallets, compounds and cases connect the most entities (hubs worth a closer look)?
-- A compound is one value whatever script an agency wrote it in: staging maps every spelling to
-- the gazetteer's canonical name (entity_event.compound, compound_id), which entity_link holds.
SELECT via, value, max(shared_by) AS entities, bool_or(is_hub) AS is_hub, count(*) AS links
FROM entity_link
GROUP BY via, value
ORDER BY entities DESC, via, value
LIMIT 50;
