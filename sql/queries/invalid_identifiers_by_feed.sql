-- Which agency feeds send identifiers whose check digit or format fails, by kind, and what share is invalid?
SELECT agency, feed, kind,
       count(*) AS identifiers,
       count(*) FILTER (WHERE NOT check_valid) AS invalid,
       round(100.0 * count(*) FILTER (WHERE NOT check_valid) / count(*), 1) AS invalid_percent,
       count(*) FILTER (WHERE value_normalised IS NULL) AS unparsed
FROM entity_identifier
GROUP BY agency, feed, kind
HAVING count(*) FILTER (WHERE NOT check_valid) > 0 OR count(*) FILTER (WHERE value_normalised IS NULL) > 0
ORDER BY invalid DESC, agency, feed, kind;
