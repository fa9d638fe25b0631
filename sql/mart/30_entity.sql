-- Step 30: one row per entity, every aggregate computed from the visible records only.
-- Ties are broken by value so that the same inputs always give the same mart (idempotence).

-- The names an entity may be shown by, most wanted first (rank): the Latin form of its
-- records' names; else the Latin spelling an agency gave beside a name the lake cannot
-- transliterate (Lao, Khmer: entity_name's role 'latin'); else the name as written. A person
-- is never shown without a name.
CREATE TEMP TABLE entity_name_count AS
SELECT entity_id, name_latin AS name, 0 AS rank, count(*) AS n
FROM entity_record
WHERE entity_id IS NOT NULL AND name_latin IS NOT NULL
GROUP BY ALL
UNION ALL
SELECT entity_id, name_latin, 1, count(*)
FROM entity_name
WHERE entity_id IS NOT NULL AND role = 'latin' AND name_latin IS NOT NULL
GROUP BY ALL
UNION ALL
SELECT entity_id, name_original, 2, count(*)
FROM entity_record
WHERE entity_id IS NOT NULL AND name_original IS NOT NULL
GROUP BY ALL;

CREATE TEMP TABLE entity_detail_count AS
SELECT entity_id,
       sum(n_identifier)::BIGINT AS identifier_count,
       sum(n_phone)::BIGINT AS phone_count,
       sum(n_account)::BIGINT AS account_count,
       sum(n_event)::BIGINT AS event_count,
       min(first_seen) AS first_seen,
       max(last_seen) AS last_seen
FROM (
    SELECT entity_id, count(*) AS n_identifier, 0 AS n_phone, 0 AS n_account, 0 AS n_event,
           NULL::DATE AS first_seen, NULL::DATE AS last_seen
    FROM entity_identifier GROUP BY entity_id
    UNION ALL
    SELECT entity_id, 0, count(*), 0, 0, NULL, NULL FROM entity_phone GROUP BY entity_id
    UNION ALL
    SELECT entity_id, 0, 0, count(*), 0, NULL, NULL FROM entity_account GROUP BY entity_id
    UNION ALL
    SELECT entity_id, 0, 0, 0, count(*), min(event_date), max(event_date)
    FROM entity_event GROUP BY entity_id
)
WHERE entity_id IS NOT NULL
GROUP BY entity_id;

-- Entities of two or more agencies whose match is not new: an entity of the previous
-- resolution (in_previous_entity_record; empty on a first run) that held one of their records
-- held records of two of their agencies already. The rule of the run summary's "new
-- cross-agency matches" (fusionlake.pipeline.resolve.new_cross_agency_matches). The previous
-- entity's agencies (entity_agencies) are of all the records it held, those no longer staged
-- too: an agency's corrected drop supersedes its earlier rows, and a person matched before
-- through them is not a new match.
CREATE TEMP TABLE matched_before AS
WITH cross_agency AS (
    SELECT entity_id, list(DISTINCT agency) AS agencies
    FROM entity_record
    WHERE entity_id IS NOT NULL
    GROUP BY entity_id
    HAVING count(DISTINCT agency) >= 2
)
SELECT DISTINCT c.entity_id
FROM cross_agency AS c
JOIN entity_record AS r USING (entity_id)
JOIN in_previous_entity_record AS p USING (record_id)
WHERE len(list_intersect(c.agencies, p.entity_agencies)) >= 2;

CREATE TABLE entity AS
WITH base AS (
    SELECT
        entity_id,
        list_sort(list_distinct(
            list({'name': name_original, 'script': name_script, 'latin': name_latin})
                FILTER (WHERE name_original IS NOT NULL))) AS names,
        list_sort(list_distinct(list(sex))) AS sexes,
        list_sort(list_distinct(list(nationality))) AS nationalities,
        list_sort(list_distinct(list(role))) AS roles,
        list_sort(list_distinct(list(agency))) AS agencies,
        list_sort(list_distinct(list(agency || '/' || feed))) AS feeds,
        count(*) AS record_count,
        min(received_at) AS first_received_at
    FROM entity_record
    WHERE entity_id IS NOT NULL
    GROUP BY entity_id
),
birth AS (  -- most frequent birth date, day precision first
    -- arg_min over a struct key: plain aggregates, far cheaper than ORDER BY inside them
    SELECT entity_id,
           arg_min(birth_date, {'day': NOT is_day, 'n': -n, 'd': birth_date}) AS birth_date,
           arg_min(birth_date_precision, {'day': NOT is_day, 'n': -n, 'd': birth_date})
               AS birth_date_precision
    FROM (
        SELECT entity_id, birth_date, birth_date_precision,
               birth_date_precision = 'day' AS is_day, count(*) AS n
        FROM entity_record
        WHERE entity_id IS NOT NULL AND birth_date IS NOT NULL
        GROUP BY ALL
    )
    GROUP BY entity_id
),
sex AS (
    SELECT entity_id, arg_min(sex, {'n': -n, 'sex': sex}) AS sex
    FROM (SELECT entity_id, sex, count(*) AS n FROM entity_record
          WHERE entity_id IS NOT NULL AND sex IS NOT NULL GROUP BY ALL)
    GROUP BY entity_id
),
display AS (
    SELECT entity_id, arg_min(name, {'rank': rank, 'n': -n, 'name': name}) AS display_name
    FROM entity_name_count
    GROUP BY entity_id
)
SELECT
    b.entity_id,
    d.display_name,
    coalesce(b.names, []) AS names,
    bd.birth_date,
    bd.birth_date_precision,
    s.sex,
    len(b.sexes) > 1 AS sex_conflict,
    b.nationalities,
    b.roles,
    b.agencies,
    len(b.agencies) AS agency_count,
    len(b.agencies) >= 2 AND m.entity_id IS NULL AS new_cross_agency_match,
    b.feeds,
    b.record_count,
    coalesce(c.identifier_count, 0) AS identifier_count,
    coalesce(c.phone_count, 0) AS phone_count,
    coalesce(c.account_count, 0) AS account_count,
    coalesce(c.event_count, 0) AS event_count,
    c.first_seen,
    c.last_seen,
    b.first_received_at
FROM base AS b
LEFT JOIN display AS d USING (entity_id)
LEFT JOIN birth AS bd USING (entity_id)
LEFT JOIN sex AS s USING (entity_id)
LEFT JOIN entity_detail_count AS c USING (entity_id)
LEFT JOIN matched_before AS m USING (entity_id)
ORDER BY b.entity_id;

COMMENT ON TABLE entity IS 'One row per resolved person. Every aggregate is computed from the records this mart''s audience may see.';
COMMENT ON COLUMN entity.entity_id IS 'Stable id of the person across runs; see entity_history for merges and splits.';
COMMENT ON COLUMN entity.display_name IS 'The most frequent Latin name among the entity''s records (ties: alphabetical); for a name no Latin form is made of (Lao, Khmer), the Latin spelling an agency gave, else the name as written.';
COMMENT ON COLUMN entity.names IS 'Every distinct name as written, with its script and Latin transliteration.';
COMMENT ON COLUMN entity.birth_date IS 'Most frequent birth date, a date known to the day preferred over a month or year.';
COMMENT ON COLUMN entity.birth_date_precision IS 'day, month or year: precision of birth_date.';
COMMENT ON COLUMN entity.sex IS 'Most frequent sex among the records (M or F).';
COMMENT ON COLUMN entity.sex_conflict IS 'True when the records disagree on sex.';
COMMENT ON COLUMN entity.nationalities IS 'Distinct nationalities (ISO alpha-2) the records state.';
COMMENT ON COLUMN entity.roles IS 'Distinct roles (suspect, victim, detainee, returnee, ...) the records give.';
COMMENT ON COLUMN entity.agencies IS 'Agencies that know this person (that sent at least one of its records).';
COMMENT ON COLUMN entity.agency_count IS 'len(agencies): 2 or more means a cross-agency match.';
COMMENT ON COLUMN entity.new_cross_agency_match IS 'True when the person is known to two or more agencies and no entity of the previous resolution that held one of its records held records of two of those agencies together (records since superseded count): a match new in this version (every cross-agency entity on a first run). The run summary''s "new cross-agency matches" counts these.';
COMMENT ON COLUMN entity.feeds IS 'agency/feed of every feed that mentions the person.';
COMMENT ON COLUMN entity.record_count IS 'Number of person records (rows of entity_record).';
COMMENT ON COLUMN entity.identifier_count IS 'Rows of entity_identifier for the person.';
COMMENT ON COLUMN entity.phone_count IS 'Rows of entity_phone for the person.';
COMMENT ON COLUMN entity.account_count IS 'Rows of entity_account for the person.';
COMMENT ON COLUMN entity.event_count IS 'Rows of entity_event for the person.';
COMMENT ON COLUMN entity.first_seen IS 'Date of the earliest event (wanted notice, arrest, detention, ...) of the person.';
COMMENT ON COLUMN entity.last_seen IS 'Date of the latest event of the person.';
COMMENT ON COLUMN entity.first_received_at IS 'When the lake first received a drop mentioning the person (NULL when no drop of it is in the ledger).';
