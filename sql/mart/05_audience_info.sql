-- Step 05 (an audience step: re-run for each audience that shares a build): who this mart is
-- for and when it was built. Variables set by the build: audience, built_at, previous_built_at,
-- hub_min.

CREATE OR REPLACE TABLE mart_info AS
SELECT
    coalesce(getvariable('audience'), 'all') AS audience,
    CAST(getvariable('built_at') AS TIMESTAMPTZ) AS built_at,
    CAST(getvariable('previous_built_at') AS TIMESTAMPTZ) AS previous_built_at,
    CAST(getvariable('hub_min') AS INTEGER) AS hub_min;
COMMENT ON TABLE mart_info IS 'One row describing this mart: who it was built for and when.';
COMMENT ON COLUMN mart_info.audience IS 'Agency this mart was built for, or all. Only rows releasable to it are present.';
COMMENT ON COLUMN mart_info.built_at IS 'When this mart was built.';
COMMENT ON COLUMN mart_info.previous_built_at IS 'Build time of the mart that was current when this one was built (NULL for the first); "new since the previous version" means after this.';
COMMENT ON COLUMN mart_info.hub_min IS 'A phone, account, wallet, compound or case held by more than this many entities is a hub: entity_link.is_hub.';
