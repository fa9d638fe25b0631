-- Which phones and accounts are held by people tied to two or more different compounds?
WITH held AS (
    SELECT 'phone' AS via, e164 AS value, entity_id FROM entity_phone WHERE e164 IS NOT NULL
    UNION
    SELECT CASE WHEN kind = 'crypto_wallet' THEN 'wallet' ELSE 'account' END,
           value_normalised, entity_id
    FROM entity_account WHERE value_normalised IS NOT NULL
),
-- one compound per gazetteer id, whatever script it was written in (KK Park = เคเคปาร์ค)
compound_of AS (
    SELECT DISTINCT entity_id, coalesce(compound_id, compound) AS compound_key, compound
    FROM entity_event WHERE compound IS NOT NULL
)
SELECT h.via, h.value,
       list(DISTINCT c.compound ORDER BY c.compound) AS compounds,
       list(DISTINCT h.entity_id ORDER BY h.entity_id) AS entity_ids,
       count(DISTINCT h.entity_id) AS entities
FROM held AS h
JOIN compound_of AS c USING (entity_id)
GROUP BY h.via, h.value
HAVING count(DISTINCT c.compound_key) >= 2
ORDER BY count(DISTINCT c.compound_key) DESC, entities DESC, h.via, h.value;
