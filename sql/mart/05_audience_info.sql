-- Step 05 (an audience step: re-run for each audience that shares a build): who this mart is
-- for, when it was built and from what. Variables set by the build: audience, built_at,
-- previous_built_at, hub_min, resolution_version, rules_sha256.

CREATE OR REPLACE TABLE mart_info AS
SELECT
    coalesce(getvariable('audience'), 'all') AS audience,
    CAST(getvariable('built_at') AS TIMESTAMPTZ) AS built_at,
    CAST(getvariable('previous_built_at') AS TIMESTAMPTZ) AS previous_built_at,
    CAST(getvariable('hub_min') AS INTEGER) AS hub_min,
    CAST(getvariable('resolution_version') AS VARCHAR) AS resolution_version,
    CAST(getvariable('rules_sha256') AS VARCHAR) AS rules_sha256;
COMMENT ON TABLE mart_info IS 'One row describing this mart: who it was built for and when.';
COMMENT ON COLUMN mart_info.audience IS 'Agency this mart was built for, or all. Only rows releasable to it are present.';
COMMENT ON COLUMN mart_info.built_at IS 'When this mart was built.';
COMMENT ON COLUMN mart_info.previous_built_at IS 'Build time of the mart that was current when this one was built (NULL for the first); "new since the previous version" means after this.';
COMMENT ON COLUMN mart_info.hub_min IS 'A phone, account, wallet, compound or case held by more than this many entities is a hub: entity_link.is_hub.';
COMMENT ON COLUMN mart_info.resolution_version IS 'Version of the audience''s resolution (resolution/.../<version>) the mart holds; NULL when it was built from frames not stored in a lake. The next run updates the mart in place only when its resolution is an increment of exactly this version.';
COMMENT ON COLUMN mart_info.rules_sha256 IS 'SHA-256 of the mart''s rules (every file of sql/mart/) the mart was built with; a mart built with other rules is rebuilt, never updated in place.';
