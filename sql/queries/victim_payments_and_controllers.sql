-- Which accounts and wallets did fraud victims pay into, how much was reported lost into each, and who controls them?
-- A report names one amount; when it lists several accounts, the amount counts towards each.
WITH paid AS (
    SELECT account_kind, account, any_value(institution) AS institution,
           count(*) AS reports, count(DISTINCT victim_entity_id) AS victims,
           sum(amount) AS total_amount, list(DISTINCT currency) AS currencies
    FROM (SELECT DISTINCT report_record_id, victim_entity_id, account_kind, account,
                          institution, amount, currency
          FROM money_trail)
    GROUP BY account_kind, account
),
holders AS (
    SELECT account_kind, account,
           list(DISTINCT holder_entity_id ORDER BY holder_entity_id) AS holder_entity_ids,
           list(DISTINCT holder_name ORDER BY holder_name) AS holder_names
    FROM money_trail
    WHERE holder_entity_id IS NOT NULL
    GROUP BY account_kind, account
)
SELECT p.account_kind, p.account, p.institution, p.reports, p.victims, p.total_amount,
       p.currencies, coalesce(h.holder_entity_ids, []) AS holder_entity_ids,
       coalesce(h.holder_names, []) AS holder_names
FROM paid AS p
LEFT JOIN holders AS h USING (account_kind, account)
ORDER BY p.total_amount DESC NULLS LAST, p.account;
