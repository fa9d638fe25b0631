-- Which wanted cases (cn_mps/suspects) do fraud losses lead to, through the account a victim paid into, the phone that called the victim or the same case number, and how much was lost?
-- Fraud reports and wanted notices are numbered apart (reports J..., wanted cases A...), so a
-- report is tied to a case through what links them: the account or wallet the victim paid into
-- held by a wanted suspect, the phone that called the victim held by one, or (where an agency
-- does use one number) the same case number. A report counts once per case and currency,
-- however many links lead there.
WITH wanted AS (
    SELECT DISTINCT entity_id, case_ref FROM entity_event
    WHERE event_type = 'wanted' AND case_ref IS NOT NULL
),
report AS (
    SELECT record_id, entity_id AS victim_entity_id, case_ref AS report_case_ref, amount,
           currency
    FROM entity_event
    WHERE event_type = 'fraud_report'
),
lead AS (  -- (report, wanted person, how)
    SELECT r.record_id, own.entity_id, 'account' AS via
    FROM report AS r
    JOIN entity_account AS paid ON paid.record_id = r.record_id AND paid.relation = 'counterparty'
    JOIN entity_account AS own ON own.value_normalised = paid.value_normalised
                              AND own.relation = 'own'
    UNION
    SELECT r.record_id, own.entity_id, 'phone'
    FROM report AS r
    JOIN entity_phone AS caller ON caller.record_id = r.record_id
                               AND caller.relation = 'counterparty'
    JOIN entity_phone AS own ON own.e164 = caller.e164 AND own.relation = 'own'
    UNION
    SELECT r.record_id, w.entity_id, 'case_ref'
    FROM report AS r JOIN wanted AS w ON w.case_ref = r.report_case_ref
),
case_suspect AS (
    SELECT w.case_ref, list(DISTINCT w.entity_id ORDER BY w.entity_id) AS suspect_entity_ids,
           list(DISTINCT e.display_name ORDER BY e.display_name) AS suspect_names
    FROM wanted AS w JOIN entity AS e USING (entity_id)
    GROUP BY w.case_ref
),
per_report AS (  -- one row per case and report
    SELECT w.case_ref, l.record_id, list(DISTINCT l.via) AS vias
    FROM lead AS l JOIN wanted AS w USING (entity_id)
    GROUP BY w.case_ref, l.record_id
)
SELECT p.case_ref, s.suspect_entity_ids, s.suspect_names,
       count(*) AS reports,
       count(DISTINCT r.victim_entity_id) AS victims,
       sum(r.amount) AS total_amount,  -- DECIMAL: exact
       r.currency,
       list_sort(list_distinct(flatten(list(p.vias)))) AS linked_via,
       list(DISTINCT r.report_case_ref ORDER BY r.report_case_ref) AS report_case_refs
FROM per_report AS p
JOIN report AS r USING (record_id)
JOIN case_suspect AS s USING (case_ref)
GROUP BY p.case_ref, s.suspect_entity_ids, s.suspect_names, r.currency
ORDER BY total_amount DESC NULLS LAST, p.case_ref;
