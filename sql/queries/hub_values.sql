-- Which phones, accounts, wallets, compounds and cases connect the most entities (hubs worth a closer look)?
SELECT via, value, max(shared_by) AS entities, bool_or(is_hub) AS is_hub, count(*) AS links
FROM entity_link
GROUP BY via, value
ORDER BY entities DESC, via, value
LIMIT 50;
