-- Step 20: names, identifiers, phones, accounts and events of each record, with its entity.
-- LEFT JOINs for the same reason as step 10: a detail row without a record must fail a check,
-- not vanish.

CREATE TABLE entity_name AS
SELECT r.entity_id, n.record_id, n.agency, n.feed, n.source_key, n.drop_id, n.source_row,
       n.role, n.name_original, n.name_script, n.name_latin, n.family_name, n.given_name,
       n.releasable_to
FROM vis_person_name AS n
LEFT JOIN entity_record AS r USING (record_id)
ORDER BY r.entity_id, n.record_id, n.role, n.name_original;
COMMENT ON TABLE entity_name IS 'Every name on each record (a feed may give a native-script name, its Latin spelling and aliases), with the entity it belongs to; the resolver compares records across all of them.';
COMMENT ON COLUMN entity_name.entity_id IS 'The entity (person) whose record carries this name: entity.entity_id.';
COMMENT ON COLUMN entity_name.record_id IS 'The person record it is on: entity_record.record_id.';
COMMENT ON COLUMN entity_name.agency IS 'Agency that sent the record.';
COMMENT ON COLUMN entity_name.feed IS 'The agency''s feed it came in.';
COMMENT ON COLUMN entity_name.source_key IS 'The row''s id at the agency (the feed''s key column).';
COMMENT ON COLUMN entity_name.drop_id IS 'The drop (file delivery) it came from: drop_ledger.drop_id.';
COMMENT ON COLUMN entity_name.source_row IS '1-based data row number in the raw file.';
COMMENT ON COLUMN entity_name.releasable_to IS 'Agencies this row may be shown to.';
COMMENT ON COLUMN entity_name.role IS 'primary (the record''s name), latin (its Latin spelling as the agency wrote it) or alias.';
COMMENT ON COLUMN entity_name.name_original IS 'As written by the agency (Zawgyi converted to Unicode).';
COMMENT ON COLUMN entity_name.name_script IS 'Han, Thai, Lao, Myanmar, Latin or Other.';
COMMENT ON COLUMN entity_name.name_latin IS 'Transliterated to Latin, upper case, family name first.';
COMMENT ON COLUMN entity_name.family_name IS 'Family name part, in Latin.';
COMMENT ON COLUMN entity_name.given_name IS 'Given name part, in Latin.';

CREATE TABLE entity_identifier AS
SELECT r.entity_id, i.record_id, i.agency, i.feed, i.source_key, i.drop_id, i.source_row,
       i.kind, i.value_original, i.value_normalised, i.issuing_country, i.check_valid,
       i.implied_birth_date, i.implied_sex, i.reason, i.releasable_to
FROM vis_identifier AS i
LEFT JOIN entity_record AS r USING (record_id)
ORDER BY r.entity_id, i.record_id, i.kind;
COMMENT ON TABLE entity_identifier IS 'Identity documents and device ids (CN resident ID, TH national ID, MM NRC, passport, IMEI, ICCID) on each record, with the entity they belong to.';
COMMENT ON COLUMN entity_identifier.entity_id IS 'The entity (person) whose record carries this identifier: entity.entity_id.';
COMMENT ON COLUMN entity_identifier.record_id IS 'The person record it is on: entity_record.record_id.';
COMMENT ON COLUMN entity_identifier.agency IS 'Agency that sent the record.';
COMMENT ON COLUMN entity_identifier.feed IS 'The agency''s feed it came in.';
COMMENT ON COLUMN entity_identifier.source_key IS 'The row''s id at the agency (the feed''s key column).';
COMMENT ON COLUMN entity_identifier.drop_id IS 'The drop (file delivery) it came from: drop_ledger.drop_id.';
COMMENT ON COLUMN entity_identifier.source_row IS '1-based data row number in the raw file.';
COMMENT ON COLUMN entity_identifier.releasable_to IS 'Agencies this row may be shown to.';
COMMENT ON COLUMN entity_identifier.kind IS 'cn_resident_id, th_national_id, mm_nrc, passport, imei or iccid.';
COMMENT ON COLUMN entity_identifier.value_original IS 'As written by the agency.';
COMMENT ON COLUMN entity_identifier.value_normalised IS 'Canonical form used for matching; NULL when the value could not be parsed (see reason).';
COMMENT ON COLUMN entity_identifier.issuing_country IS 'ISO 3166-1 alpha-2 of the issuer.';
COMMENT ON COLUMN entity_identifier.check_valid IS 'Whether the check digit / format holds; NULL when the kind has none.';
COMMENT ON COLUMN entity_identifier.implied_birth_date IS 'Birth date the identifier encodes (CN resident ID), else NULL.';
COMMENT ON COLUMN entity_identifier.implied_sex IS 'Sex the identifier encodes (CN resident ID), else NULL.';
COMMENT ON COLUMN entity_identifier.reason IS 'Why value_normalised is NULL or check_valid is false.';

CREATE TABLE entity_phone AS
SELECT r.entity_id, p.record_id, p.agency, p.feed, p.source_key, p.drop_id, p.source_row,
       p.relation, p.phone_original, p.e164, p.country, p.line_type, p.reason, p.releasable_to
FROM vis_phone AS p
LEFT JOIN entity_record AS r USING (record_id)
ORDER BY r.entity_id, p.record_id, p.e164;
COMMENT ON TABLE entity_phone IS 'Phone numbers on each record, with the entity they belong to.';
COMMENT ON COLUMN entity_phone.entity_id IS 'The entity (person) whose record carries this phone number: entity.entity_id.';
COMMENT ON COLUMN entity_phone.record_id IS 'The person record it is on: entity_record.record_id.';
COMMENT ON COLUMN entity_phone.agency IS 'Agency that sent the record.';
COMMENT ON COLUMN entity_phone.feed IS 'The agency''s feed it came in.';
COMMENT ON COLUMN entity_phone.source_key IS 'The row''s id at the agency (the feed''s key column).';
COMMENT ON COLUMN entity_phone.drop_id IS 'The drop (file delivery) it came from: drop_ledger.drop_id.';
COMMENT ON COLUMN entity_phone.source_row IS '1-based data row number in the raw file.';
COMMENT ON COLUMN entity_phone.releasable_to IS 'Agencies this row may be shown to.';
COMMENT ON COLUMN entity_phone.relation IS 'own: the person''s number; counterparty: a number the person dealt with (e.g. the number that called a fraud victim).';
COMMENT ON COLUMN entity_phone.e164 IS 'Number in E.164 form (+8613800138000); NULL when it could not be parsed (see reason).';
COMMENT ON COLUMN entity_phone.phone_original IS 'As written by the agency.';
COMMENT ON COLUMN entity_phone.reason IS 'Why e164 is NULL (the number could not be parsed).';
COMMENT ON COLUMN entity_phone.country IS 'ISO 3166-1 alpha-2 of the numbering plan.';
COMMENT ON COLUMN entity_phone.line_type IS 'mobile, fixed_line, ... where known.';

CREATE TABLE entity_account AS
SELECT r.entity_id, a.record_id, a.agency, a.feed, a.source_key, a.drop_id, a.source_row,
       a.relation, a.kind, a.institution, a.value_original, a.value_normalised, a.check_valid,
       a.reason, a.releasable_to
FROM vis_account AS a
LEFT JOIN entity_record AS r USING (record_id)
ORDER BY r.entity_id, a.record_id, a.value_normalised;
COMMENT ON TABLE entity_account IS 'Bank accounts, cards and crypto wallets on each record, with the entity they belong to.';
COMMENT ON COLUMN entity_account.entity_id IS 'The entity (person) whose record carries this account: entity.entity_id.';
COMMENT ON COLUMN entity_account.record_id IS 'The person record it is on: entity_record.record_id.';
COMMENT ON COLUMN entity_account.agency IS 'Agency that sent the record.';
COMMENT ON COLUMN entity_account.feed IS 'The agency''s feed it came in.';
COMMENT ON COLUMN entity_account.source_key IS 'The row''s id at the agency (the feed''s key column).';
COMMENT ON COLUMN entity_account.drop_id IS 'The drop (file delivery) it came from: drop_ledger.drop_id.';
COMMENT ON COLUMN entity_account.source_row IS '1-based data row number in the raw file.';
COMMENT ON COLUMN entity_account.releasable_to IS 'Agencies this row may be shown to.';
COMMENT ON COLUMN entity_account.relation IS 'own: held by the person; counterparty: an account the person paid into (fraud reports).';
COMMENT ON COLUMN entity_account.kind IS 'bank_account, bank_card or crypto_wallet.';
COMMENT ON COLUMN entity_account.institution IS 'Bank name, or the chain (TRC20) for wallets.';
COMMENT ON COLUMN entity_account.value_normalised IS 'Account number, card number or wallet address in canonical form.';
COMMENT ON COLUMN entity_account.value_original IS 'As written by the agency.';
COMMENT ON COLUMN entity_account.reason IS 'Why value_normalised is NULL or check_valid is false.';
COMMENT ON COLUMN entity_account.check_valid IS 'Luhn (cards) or base58check (wallets) holds; NULL when the kind has none.';

CREATE TABLE entity_event AS
SELECT r.entity_id, e.record_id, e.agency, e.feed, e.source_key, e.drop_id, e.source_row,
       e.event_type, e.event_date, e.place, e.country, e.compound, e.case_ref,
       -- money is exact: sums of DOUBLE amounts show artefacts (4061325.0600000005)
       CAST(e.amount AS DECIMAL(18, 2)) AS amount, e.currency, e.flight, e.releasable_to, e.place_id, e.place_original, e.compound_id,
       e.compound_original
FROM vis_event AS e
LEFT JOIN entity_record AS r USING (record_id)
ORDER BY r.entity_id, e.event_date, e.record_id;
COMMENT ON TABLE entity_event IS 'What happened to each entity, one row per source row: wanted notices, arrests, detentions, rescues, repatriations and fraud reports (the entity is the victim).';
COMMENT ON COLUMN entity_event.entity_id IS 'The entity (person) whose record carries this event: entity.entity_id.';
COMMENT ON COLUMN entity_event.record_id IS 'The person record it is on: entity_record.record_id.';
COMMENT ON COLUMN entity_event.agency IS 'Agency that sent the record.';
COMMENT ON COLUMN entity_event.feed IS 'The agency''s feed it came in.';
COMMENT ON COLUMN entity_event.source_key IS 'The row''s id at the agency (the feed''s key column).';
COMMENT ON COLUMN entity_event.drop_id IS 'The drop (file delivery) it came from: drop_ledger.drop_id.';
COMMENT ON COLUMN entity_event.source_row IS '1-based data row number in the raw file.';
COMMENT ON COLUMN entity_event.releasable_to IS 'Agencies this row may be shown to.';
COMMENT ON COLUMN entity_event.event_type IS 'wanted, arrest, detention, rescue, repatriation or fraud_report.';
COMMENT ON COLUMN entity_event.event_date IS 'When it happened (for a wanted notice: when the case was filed; a fraud report: when it was reported).';
COMMENT ON COLUMN entity_event.country IS 'ISO 3166-1 alpha-2 of where it happened.';
COMMENT ON COLUMN entity_event.compound IS 'Canonical name of the scam compound involved (KK Park, Shwe Kokko, ...), from the place gazetteer (transforms/data/places.yaml); a compound not in it keeps its Latin transliteration.';
COMMENT ON COLUMN entity_event.compound_id IS 'Gazetteer id of the compound (mm_kk_park, mm_shwe_kokko, ...): one id for every spelling in Latin, Burmese, Thai and Chinese; NULL when the compound is not in the gazetteer.';
COMMENT ON COLUMN entity_event.compound_original IS 'The compound as the agency wrote it.';
COMMENT ON COLUMN entity_event.place IS 'Canonical name of where it happened (Myawaddy, Mae Sot IDC, ...) from the place gazetteer; a place not in it keeps its Latin transliteration.';
COMMENT ON COLUMN entity_event.place_id IS 'Gazetteer id of the place (mm_myawaddy, th_mae_sot_idc, ...); NULL when the place is not in the gazetteer.';
COMMENT ON COLUMN entity_event.place_original IS 'The place as the agency wrote it.';
COMMENT ON COLUMN entity_event.case_ref IS 'The agency''s case number.';
COMMENT ON COLUMN entity_event.amount IS 'Amount lost (fraud reports), in currency: DECIMAL(18,2), exact to the cent, so sums are exact too.';
COMMENT ON COLUMN entity_event.currency IS 'ISO 4217.';
COMMENT ON COLUMN entity_event.flight IS 'Flight number of a repatriation.';
