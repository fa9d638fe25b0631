-- Step 70: the analysts' views. Views read only mart tables, so they stay valid in the file.

CREATE VIEW cross_agency_entity AS
SELECT entity_id, display_name, agencies, agency_count, roles, nationalities, birth_date, sex,
       record_count, first_seen, last_seen
FROM entity
WHERE agency_count >= 2;
COMMENT ON VIEW cross_agency_entity IS 'Persons known to two or more agencies: the matches fusion exists for.';
COMMENT ON COLUMN cross_agency_entity.entity_id IS 'entity.entity_id.';
COMMENT ON COLUMN cross_agency_entity.display_name IS 'entity.display_name: the most frequent Latin name (see entity).';
COMMENT ON COLUMN cross_agency_entity.agencies IS 'Agencies that know the person.';
COMMENT ON COLUMN cross_agency_entity.agency_count IS 'len(agencies), 2 or more.';
COMMENT ON COLUMN cross_agency_entity.roles IS 'Distinct roles the records give.';
COMMENT ON COLUMN cross_agency_entity.nationalities IS 'Distinct nationalities (ISO alpha-2).';
COMMENT ON COLUMN cross_agency_entity.birth_date IS 'entity.birth_date.';
COMMENT ON COLUMN cross_agency_entity.sex IS 'entity.sex.';
COMMENT ON COLUMN cross_agency_entity.record_count IS 'Number of person records.';
COMMENT ON COLUMN cross_agency_entity.first_seen IS 'Date of the earliest event.';
COMMENT ON COLUMN cross_agency_entity.last_seen IS 'Date of the latest event.';

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
COMMENT ON COLUMN money_trail.victim_entity_id IS 'The victim who filed the report: entity.entity_id.';
COMMENT ON COLUMN money_trail.victim_name IS 'The victim''s display_name.';
COMMENT ON COLUMN money_trail.report_record_id IS 'The fraud report''s record: entity_record.record_id.';
COMMENT ON COLUMN money_trail.report_agency IS 'Agency that took the report.';
COMMENT ON COLUMN money_trail.report_feed IS 'Feed of the report.';
COMMENT ON COLUMN money_trail.report_drop_id IS 'Drop the report came in.';
COMMENT ON COLUMN money_trail.report_source_row IS 'Row of the report in its file.';
COMMENT ON COLUMN money_trail.report_key IS 'The report''s id at the agency.';
COMMENT ON COLUMN money_trail.case_ref IS 'The fraud report''s case number.';
COMMENT ON COLUMN money_trail.report_date IS 'When the fraud was reported.';
COMMENT ON COLUMN money_trail.amount IS 'Amount the report says was lost (DECIMAL): the whole report''s, repeated for each account it names.';
COMMENT ON COLUMN money_trail.currency IS 'ISO 4217.';
COMMENT ON COLUMN money_trail.account_kind IS 'bank_account, bank_card or crypto_wallet.';
COMMENT ON COLUMN money_trail.account IS 'The account or wallet paid into, normalised.';
COMMENT ON COLUMN money_trail.institution IS 'Bank, or the chain for wallets.';
COMMENT ON COLUMN money_trail.holder_entity_id IS 'An entity holding the account as its own (NULL when none is known).';
COMMENT ON COLUMN money_trail.holder_name IS 'The holder''s display_name.';
COMMENT ON COLUMN money_trail.holder_roles IS 'The holder''s roles (suspect, ...).';
COMMENT ON COLUMN money_trail.holder_record_id IS 'The holder''s record naming the account.';
COMMENT ON COLUMN money_trail.holder_agency IS 'Agency of that record.';
COMMENT ON COLUMN money_trail.holder_feed IS 'Feed of that record.';
COMMENT ON COLUMN money_trail.holder_drop_id IS 'Drop of that record.';
COMMENT ON COLUMN money_trail.holder_source_row IS 'Row of that record in its file.';

CREATE VIEW entity_network AS
SELECT l.entity_id_l AS entity_id, l.entity_id_r AS neighbour_id, n.display_name AS neighbour_name,
       n.agencies AS neighbour_agencies, l.via, l.value, l.weight, l.is_hub, l.shared_by
FROM entity_link AS l JOIN entity AS n ON n.entity_id = l.entity_id_r
UNION ALL
SELECT l.entity_id_r, l.entity_id_l, n.display_name, n.agencies, l.via, l.value, l.weight,
       l.is_hub, l.shared_by
FROM entity_link AS l JOIN entity AS n ON n.entity_id = l.entity_id_l;
COMMENT ON VIEW entity_network IS 'The direct network around each entity: every neighbour, in both directions of entity_link. Filter on entity_id; for more hops use network(entity_id, hops).';
COMMENT ON COLUMN entity_network.entity_id IS 'The entity whose neighbours these are.';
COMMENT ON COLUMN entity_network.neighbour_id IS 'A linked entity.';
COMMENT ON COLUMN entity_network.neighbour_name IS 'Its display_name.';
COMMENT ON COLUMN entity_network.neighbour_agencies IS 'Agencies that know it.';
COMMENT ON COLUMN entity_network.via IS 'What they share: phone, account, wallet, compound or case.';
COMMENT ON COLUMN entity_network.value IS 'The shared value.';
COMMENT ON COLUMN entity_network.weight IS 'entity_link.weight: 1 for a rare shared value, 0 for one everybody holds.';
COMMENT ON COLUMN entity_network.is_hub IS 'The value is a hub (entity_link.is_hub).';
COMMENT ON COLUMN entity_network.shared_by IS 'How many entities hold the value.';

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
COMMENT ON COLUMN identifier_conflict.entity_id IS 'The entity: entity.entity_id.';
COMMENT ON COLUMN identifier_conflict.kind IS 'Identity document kind: cn_resident_id, th_national_id, mm_nrc or passport.';
COMMENT ON COLUMN identifier_conflict.issuing_country IS 'ISO 3166-1 alpha-2 of the issuer.';
COMMENT ON COLUMN identifier_conflict.values_normalised IS 'The different values, sorted.';
COMMENT ON COLUMN identifier_conflict.record_ids IS 'Records carrying them.';
COMMENT ON COLUMN identifier_conflict.agencies IS 'Agencies that sent those records.';
