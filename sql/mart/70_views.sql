-- Step 70: the analysts' views. Views read only mart tables, so they stay valid in the file.

CREATE VIEW cross_agency_entity AS
SELECT entity_id, display_name, agencies, agency_count, roles, nationalities, birth_date, sex,
       record_count, first_seen, last_seen
FROM entity
WHERE agency_count >= 2;
COMMENT ON VIEW cross_agency_entity IS 'Persons known to two or more agencies: the matches fusion exists for.';

CREATE VIEW money_trail AS
SELECT
    v.entity_id AS victim_entity_id,
    ve.display_name AS victim_name,
    v.record_id AS report_record_id,
    v.agency AS report_agency,
    v.feed AS report_feed,
    v.drop_id AS report_drop_id,
    v.source_row AS report_source_row,
    v.source_key AS report_key,
    v.case_ref,
    v.event_date AS report_date,
    v.amount,
    v.currency,
    a.kind AS account_kind,
    a.value_normalised AS account,
    a.institution,
    h.entity_id AS holder_entity_id,
    he.display_name AS holder_name,
    he.roles AS holder_roles,
    h.record_id AS holder_record_id,
    h.agency AS holder_agency,
    h.feed AS holder_feed,
    h.drop_id AS holder_drop_id,
    h.source_row AS holder_source_row
FROM entity_event AS v
JOIN entity_account AS a
  ON a.record_id = v.record_id AND a.relation = 'counterparty' AND a.value_normalised IS NOT NULL
LEFT JOIN entity_account AS h
  ON h.value_normalised = a.value_normalised AND h.relation = 'own'
 AND (h.kind = 'crypto_wallet') = (a.kind = 'crypto_wallet')
LEFT JOIN entity AS ve ON ve.entity_id = v.entity_id
LEFT JOIN entity AS he ON he.entity_id = h.entity_id
WHERE v.event_type = 'fraud_report';
COMMENT ON VIEW money_trail IS 'Follow the money: each fraud report, the account or wallet the victim paid into, and the entities holding that account as their own (holder_* NULL when no holder is known). Provenance of both sides included.';

CREATE VIEW entity_network AS
SELECT l.entity_id_l AS entity_id, l.entity_id_r AS neighbour_id, n.display_name AS neighbour_name,
       n.agencies AS neighbour_agencies, l.via, l.value, l.weight, l.is_hub, l.shared_by
FROM entity_link AS l JOIN entity AS n ON n.entity_id = l.entity_id_r
UNION ALL
SELECT l.entity_id_r, l.entity_id_l, n.display_name, n.agencies, l.via, l.value, l.weight,
       l.is_hub, l.shared_by
FROM entity_link AS l JOIN entity AS n ON n.entity_id = l.entity_id_l;
COMMENT ON VIEW entity_network IS 'The direct network around each entity: every neighbour, in both directions of entity_link. Filter on entity_id; for more hops use network(entity_id, hops).';

-- Breadth-first walk over non-hub links: hubs (a compound, a call centre) would connect everyone.
CREATE MACRO network(start_entity, max_hops) AS TABLE
WITH RECURSIVE walk(entity_id, hops, path) AS (
    SELECT start_entity, 0, [start_entity]
    UNION ALL
    SELECT n.neighbour_id, w.hops + 1, list_append(w.path, n.neighbour_id)
    FROM walk AS w
    JOIN entity_network AS n ON n.entity_id = w.entity_id AND NOT n.is_hub
    WHERE w.hops < max_hops AND NOT list_contains(w.path, n.neighbour_id)
)
SELECT w.entity_id, min(w.hops) AS hops, any_value(e.display_name) AS display_name,
       any_value(e.agencies) AS agencies, any_value(e.roles) AS roles
FROM walk AS w JOIN entity AS e USING (entity_id)
GROUP BY w.entity_id
ORDER BY hops, w.entity_id;
COMMENT ON MACRO TABLE network IS 'network(entity_id, max_hops): the entities reachable from one entity in at most max_hops non-hub links, with the fewest hops to each. Example: SELECT * FROM network(''E1'', 2).';

CREATE VIEW identifier_conflict AS
SELECT entity_id, kind, issuing_country,
       list(DISTINCT value_normalised ORDER BY value_normalised) AS values_normalised,
       list(DISTINCT record_id ORDER BY record_id) AS record_ids,
       list(DISTINCT agency ORDER BY agency) AS agencies
FROM entity_identifier
WHERE kind IN ('cn_resident_id', 'th_national_id', 'mm_nrc', 'passport')
  AND value_normalised IS NOT NULL AND entity_id IS NOT NULL
GROUP BY entity_id, kind, issuing_country
HAVING count(DISTINCT value_normalised) > 1;
COMMENT ON VIEW identifier_conflict IS 'Entities whose records carry two or more different identity documents of the same kind and issuer: a wrong merge, a forged document or a typo.';
