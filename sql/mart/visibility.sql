-- Who may see a row: the one definition of the rule (docs/architecture.md, property 4).
--
-- Not a build step (its name has no NN_ number): the build loads it before step 00, which
-- filters every input with it, and fusionlake.pipeline.marts loads it to find the audiences
-- that see the same rows and so can share one build.
--
-- audience is NULL for the all-agencies mart, which sees every row. An agency sees a row whose
-- releasable_to names it; a row without releasable_to is shown to no agency.
CREATE OR REPLACE TEMP MACRO visible_to(releasable_to, audience) AS
    audience IS NULL OR coalesce(list_contains(releasable_to, audience), false);
