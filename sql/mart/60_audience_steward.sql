-- Step 60 (an audience step: re-run for each audience that shares a build): the stewards'
-- tables. The all-agencies mart has every drop. An agency's mart has its own deliveries (every
-- drop it sent, and its own re-sends of known bytes), the drops of others that gave it a
-- visible record (not their re-sends, which are another agency's deliveries), the validation
-- results of its own drops only (they count and quote rows of the whole file, which another
-- agency may not see), and only its own quarantined rows (a rejected row was never releasable
-- to anyone else).

CREATE OR REPLACE TEMP VIEW visible_drop AS
SELECT DISTINCT drop_id FROM entity_record;

-- Of another agency's drop an agency's mart shows what its records already say (the drop, its
-- file's name, when it came, its state), not the file's digest and size, nor the ledger's
-- reason: that counts the whole file's rows, quarantined and flagged ("123 person records, 4
-- rows flagged, 2 quarantined"), rows the agency may not see. A published drop's reason is
-- "in this mart" in every mart: the ledger's names the all-agencies mart's version.
CREATE OR REPLACE TABLE drop_ledger AS
SELECT drop_id, agency, feed, file_name,
       CASE WHEN own THEN sha256 END AS sha256,
       CASE WHEN own THEN size END AS size,
       state,
       CASE WHEN state = 'published' THEN 'in this mart' WHEN own THEN reason END AS reason,
       received_at, updated_at
FROM (SELECT *, getvariable('audience') IS NULL OR agency = getvariable('audience') AS own
      FROM in_drop_ledger)
WHERE own
   OR (state IS DISTINCT FROM 'duplicate' AND drop_id IN (SELECT drop_id FROM visible_drop))
ORDER BY received_at, drop_id, file_name;
COMMENT ON TABLE drop_ledger IS 'Every file delivery (drop) and its state: received, rejected, validated, staged, published or superseded.';
COMMENT ON COLUMN drop_ledger.drop_id IS 'Derived from the content hash: the same bytes are the same drop, however often sent.';
COMMENT ON COLUMN drop_ledger.agency IS 'Agency that delivered the file.';
COMMENT ON COLUMN drop_ledger.feed IS 'Feed it was delivered to.';
COMMENT ON COLUMN drop_ledger.file_name IS 'Name of the delivered file.';
COMMENT ON COLUMN drop_ledger.received_at IS 'When the lake received the file: when it was written to the landing area (a later drop of a feed supersedes an earlier one by this time).';
COMMENT ON COLUMN drop_ledger.updated_at IS 'When the drop entered its current state.';
COMMENT ON COLUMN drop_ledger.sha256 IS 'SHA-256 of the file as received (NULL in an agency''s mart for another agency''s drop).';
COMMENT ON COLUMN drop_ledger.size IS 'File size in bytes (NULL in an agency''s mart for another agency''s drop).';
COMMENT ON COLUMN drop_ledger.state IS 'received, rejected, validated, staged, published or superseded.';
COMMENT ON COLUMN drop_ledger.reason IS 'Why the drop is in this state (e.g. the structural problem that got it rejected); "in this mart" for a published drop; NULL in an agency''s mart for another agency''s drop.';

CREATE OR REPLACE TABLE validation_result AS
SELECT drop_id, expectation, "column", success, unexpected_count, unexpected_percent, mostly,
       details
FROM in_validation_result
WHERE getvariable('audience') IS NULL
   OR drop_id IN (SELECT drop_id FROM in_drop_ledger
                  WHERE agency = getvariable('audience') AND state IS DISTINCT FROM 'duplicate')
ORDER BY drop_id, expectation, "column";
COMMENT ON TABLE validation_result IS 'Outcome of each Great Expectations expectation on each drop.';
COMMENT ON COLUMN validation_result.expectation IS 'Expectation type (e.g. expect_column_values_to_not_be_null).';
COMMENT ON COLUMN validation_result.drop_id IS 'The drop validated: drop_ledger.drop_id.';
COMMENT ON COLUMN validation_result.success IS 'Whether the expectation held (within mostly).';
COMMENT ON COLUMN validation_result.unexpected_percent IS 'unexpected_count as a percentage of the rows checked.';
COMMENT ON COLUMN validation_result."column" IS 'Column the expectation checks (NULL for table-level expectations).';
COMMENT ON COLUMN validation_result.unexpected_count IS 'Rows that failed the expectation (they are in quarantine).';
COMMENT ON COLUMN validation_result.mostly IS 'Share of rows that must pass for the expectation to succeed.';
COMMENT ON COLUMN validation_result.details IS 'JSON: partial list of unexpected values and other GX output.';

CREATE OR REPLACE TABLE quarantine AS
SELECT drop_id, agency, feed, source_row, line, expectation, "column", reason, row_json
FROM in_quarantine
WHERE getvariable('audience') IS NULL OR agency = getvariable('audience')
ORDER BY drop_id, source_row, expectation;
COMMENT ON TABLE quarantine IS 'Rows rejected by validation, with the expectation they failed and the row as received.';
COMMENT ON COLUMN quarantine.source_row IS '1-based data row number in the raw file.';
COMMENT ON COLUMN quarantine.drop_id IS 'The drop the row came from: drop_ledger.drop_id.';
COMMENT ON COLUMN quarantine.agency IS 'Agency that sent it.';
COMMENT ON COLUMN quarantine.feed IS 'Feed it was delivered to.';
COMMENT ON COLUMN quarantine.expectation IS 'The expectation (or reading rule: ragged line, no key) the row failed.';
COMMENT ON COLUMN quarantine."column" IS 'Source column of the bad value (NULL when the whole row or line is bad).';
COMMENT ON COLUMN quarantine.reason IS 'Why the row was quarantined, in words.';
COMMENT ON COLUMN quarantine.line IS '1-based physical line of the row in the raw file (the header is line 1); NULL for formats without lines (xlsx, Parquet).';
COMMENT ON COLUMN quarantine.row_json IS 'The rejected row as received, as a JSON object of source column -> value.';

-- The audit trail is the task force's stewards' (fusionlake.lake.audit): queries and decisions
-- of every agency. An agency's mart has the table, empty.
CREATE OR REPLACE TABLE audit_log AS
SELECT "at", kind, who, audience, summary, "rows", detail
FROM in_audit_log
WHERE getvariable('audience') IS NULL
ORDER BY "at", kind;
COMMENT ON TABLE audit_log IS 'Append-only audit trail of the lake: every fusionlake sql query (audience, query, who, rows returned), every steward decision and drop acceptance. Filled in the all-agencies mart only.';
COMMENT ON COLUMN audit_log.kind IS 'sql, decision or acceptance.';
COMMENT ON COLUMN audit_log."at" IS 'When it happened (UTC).';
COMMENT ON COLUMN audit_log.summary IS 'One line: the query, or the decision and its reason.';
COMMENT ON COLUMN audit_log.who IS 'The person ($USER, or fusionlake sql --as / decide --by).';
COMMENT ON COLUMN audit_log.audience IS 'Whose mart a query ran on.';
COMMENT ON COLUMN audit_log."rows" IS 'Rows a query returned (NULL when it was refused or failed).';
COMMENT ON COLUMN audit_log.detail IS 'JSON: every field of the entry, the outcome of a query among them.';
