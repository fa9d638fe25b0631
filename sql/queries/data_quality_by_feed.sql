-- How healthy is each agency feed: drops received and rejected, failed expectations, quarantined and published rows?
WITH drops AS (
    SELECT agency, feed, count(*) AS drops,
           count(*) FILTER (WHERE state = 'rejected') AS rejected_drops,
           max(received_at) AS last_received_at
    FROM drop_ledger GROUP BY ALL
),
checks AS (
    SELECT l.agency, l.feed,
           count(*) FILTER (WHERE NOT v.success) AS failed_expectations,
           coalesce(sum(v.unexpected_count) FILTER (WHERE NOT v.success), 0) AS unexpected_values
    FROM validation_result AS v JOIN drop_ledger AS l USING (drop_id)
    GROUP BY ALL
),
quarantined AS (
    SELECT agency, feed, count(DISTINCT (drop_id, source_row)) AS quarantined_rows
    FROM quarantine GROUP BY ALL
),
published AS (
    SELECT agency, feed, count(*) AS published_records FROM entity_record GROUP BY ALL
)
SELECT d.agency, d.feed, d.drops, d.rejected_drops,
       coalesce(c.failed_expectations, 0) AS failed_expectations,
       coalesce(c.unexpected_values, 0) AS unexpected_values,
       coalesce(q.quarantined_rows, 0) AS quarantined_rows,
       coalesce(p.published_records, 0) AS published_records,
       d.last_received_at
FROM drops AS d
LEFT JOIN checks AS c USING (agency, feed)
LEFT JOIN quarantined AS q USING (agency, feed)
LEFT JOIN published AS p USING (agency, feed)
ORDER BY d.agency, d.feed;
