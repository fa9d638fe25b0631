"""The run summary: what one pipeline run did, for the person reading it the next morning."""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass, field

from fusionlake.lake import layout
from fusionlake.lake.ledger import STOPPED, DropEntry, DropState
from fusionlake.pipeline.land import Landed
from fusionlake.pipeline.marts import latest, open_latest, terminal_safe
from fusionlake.pipeline.report import FAIL_ON
from fusionlake.pipeline.stage import DropResult

#: The mart's own count of new matches (entity.new_cross_agency_match).
NEW_IN_MART = "new cross-agency matches flagged in the mart (since its previous version)"


_HTML_START = re.compile(r"<(?=[A-Za-z/!?])")


def html_as_text(markdown: str) -> str:
    """Markdown in which nothing starts an HTML tag, comment or autolink (``<`` before a letter,
    ``/``, ``!`` or ``?`` is written ``&lt;``): a renderer shows such text as written.

    >>> html_as_text("found: <script>x</script>, landing/<agency>/")
    'found: &lt;script>x&lt;/script>, landing/&lt;agency>/'
    """
    return _HTML_START.sub("&lt;", markdown)


@dataclass
class RunSummary:
    run_id: str
    lake: str
    landed: list[Landed] = field(default_factory=list)
    drops: list[DropResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # what a reader should know that did not fail the run (Data Docs not rebuilt, the model
    # fallen back to the last good one, leftovers of crashed runs removed)
    notes: list[str] = field(default_factory=list)
    stages: list[tuple[str, float]] = field(default_factory=list)
    marts: dict[str, str] = field(default_factory=dict)
    data_docs: str | None = None
    resolution_stats: dict = field(default_factory=dict)
    mart_figures: dict[str, int] = field(default_factory=dict)
    # per published mart: updated in place or rebuilt, and why (see mart_builds)
    mart_builds: dict[str, dict] = field(default_factory=dict)
    # audiences whose marts a publish left as they were (fusionlake.pipeline.marts.KEPT)
    marts_kept: list[str] = field(default_factory=list)
    noop: bool = False
    # drop id -> why: drops of this run whose rows an earlier run read already (and counted in
    # its rows read): accepted after a hold, retried, validated again (:func:`read_before`)
    read_before: dict[str, str] = field(default_factory=dict)

    def stage(self, name: str, started: float) -> None:
        self.stages.append((name, time.perf_counter() - started))

    def fill_from_marts(self, store) -> None:
        """Headline figures, read back from the published 'all' mart, and how each mart was
        made."""
        self.mart_builds = mart_builds(store, self.marts)
        con = open_latest(store, "all")
        try:
            queries = {
                "entities": "select count(*) from entity",
                "person records": "select count(*) from entity_record",
                "entities known to 2+ agencies":
                    "select count(*) from entity where len(agencies) >= 2",
                "review queue": "select count(*) from review_queue",
                # against the resolution the analysts' previous mart showed, which is the last
                # run's unless runs stopped before publishing (then this one tells more)
                NEW_IN_MART: "select count(*) from entity where new_cross_agency_match",
            }
            for label, sql in queries.items():
                try:
                    self.mart_figures[label] = con.execute(sql).fetchall()[0][0]
                except Exception:  # a figure the mart cannot give is left out, not invented
                    continue
        finally:
            con.close()

    FAIL_ON = FAIL_ON

    def drops_in(self, kinds) -> list[str]:
        """This run's drops (agency/feed/file) that were rejected, held or had flagged rows."""
        kinds = set(kinds or ())
        return [d.name for d in self.drops
                if ("rejected" in kinds and d.state == DropState.REJECTED)
                or ("held" in kinds and d.state == DropState.HELD)
                or ("flagged" in kinds and d.flagged > 0)]

    def row_counts(self) -> dict[str, int]:
        """The run's rows by where they went: ``rows_read`` is ``rows_staged`` +
        ``rows_quarantined`` + ``rows_held`` + ``rows_rejected``.

        A held or rejected drop's rows are counted whole under held or rejected (none of them
        was staged; what its validation found is in its own row of the drops); quarantined and
        flagged rows are those of the drops staged (flagged rows are staged rows).
        ``rows_read_again`` are the rows of :attr:`read_before`'s drops, which an earlier run
        read (and counted) already: summed over runs, rows read less rows read again counts
        each row once.
        """
        staged = [d for d in self.drops if d.state == DropState.STAGED]
        return {
            "rows_read": sum(d.rows for d in self.drops),
            "rows_read_again": sum(d.rows for d in self.drops if d.drop_id in self.read_before),
            "rows_staged": sum(d.rows - d.quarantined for d in staged),
            "rows_quarantined": sum(d.quarantined for d in staged),
            "rows_held": sum(d.rows for d in self.drops if d.state == DropState.HELD),
            "rows_rejected": sum(d.rows for d in self.drops if d.state == DropState.REJECTED),
            "rows_flagged": sum(d.flagged for d in staged),
        }

    def as_json(self) -> dict:
        """The summary as data: the figures of :meth:`markdown`, for scripts."""
        staged = [d for d in self.drops if d.state == DropState.STAGED]
        return {
            "run_id": self.run_id, "lake": self.lake, "noop": self.noop,
            "counts": {
                "landed": sum(x.status == "landed" for x in self.landed),
                "duplicates": sum(x.status == "duplicate" for x in self.landed),
                "left_in_landing": sum(x.status in ("skipped", "misplaced", "waiting")
                                       for x in self.landed),
                "staged": len(staged),
                "rejected": sum(d.state == DropState.REJECTED for d in self.drops),
                "held": sum(d.state == DropState.HELD for d in self.drops),
                **self.row_counts(),
                "person_records_staged": sum(max(d.staged.get("person_record", 0), 0)
                                             for d in staged),
            },
            "mart_figures": dict(self.mart_figures),
            "new_cross_agency_matches": self.resolution_stats.get("new cross-agency matches"),
            "drops": [{"drop_id": d.drop_id, "name": d.name, "state": str(d.state),
                       "rows": d.rows, "quarantined": d.quarantined, "flagged": d.flagged,
                       "read_before": self.read_before.get(d.drop_id),
                       "seconds": round(d.seconds, 3), "reason": d.reason,
                       "warnings": list(d.warnings)} for d in self.drops],
            "marts": {a: f"marts/{a}/{v}/fusion.duckdb" for a, v in self.marts.items()},
            "marts_kept": list(self.marts_kept),
            "mart_builds": dict(self.mart_builds),
            "data_docs": self.data_docs,
            "problems": list(self.problems),
            "notes": list(self.notes),
            "stages": [{"stage": n, "seconds": round(sec, 3)} for n, sec in self.stages],
            "resolve_mode": self.resolution_stats.get("resolve mode", {}),
        }

    def markdown(self) -> str:
        landed = [x for x in self.landed if x.status == "landed"]
        dups = [x for x in self.landed if x.status == "duplicate"]
        rejected = [d for d in self.drops if d.state == DropState.REJECTED]
        held = [d for d in self.drops if d.state == DropState.HELD]
        staged = [d for d in self.drops if d.state == DropState.STAGED]
        rows = self.row_counts()
        lines = [f"# fusionlake run {self.run_id}", "", f"Lake: `{self.lake}`", ""]
        # the commands suggested below name the lake: run as printed, they read this one
        lake = f" --lake {shlex.quote(str(self.lake))}" if self.lake else ""
        if self.noop:
            lines += ["Nothing new: no deliveries, no pending drops, marts unchanged.", ""]
        lines += [
            "| | |", "|---|---:|",
            f"| drops landed | {len(landed)} |",
            f"| duplicates (not ingested again) | {len(dups)} |",
            f"| drops staged | {len(staged)} |",
            f"| drops rejected | {len(rejected)} |",
            f"| drops held (waiting for `fusionlake accept` or `reject`) | {len(held)} |",
            f"| rows read (= staged + quarantined + held + rejected) | {rows['rows_read']:,} |",
        ]
        if rows["rows_read_again"]:  # summed over runs, these would count twice
            lines.append("| of them read again (an earlier run read them too: see the drops) | "
                         f"{rows['rows_read_again']:,} |")
        lines += [
            f"| rows staged | {rows['rows_staged']:,} |",
            f"| rows quarantined (kept out of the drops staged) | {rows['rows_quarantined']:,} |",
            f"| rows held (every row of the drops held) | {rows['rows_held']:,} |",
            f"| rows rejected (every row of the drops rejected) | {rows['rows_rejected']:,} |",
            f"| rows flagged (staged, a value kept but not normalised) | "
            f"{rows['rows_flagged']:,} |",
            f"| person records staged | "
            f"{sum(max(d.staged.get('person_record', 0), 0) for d in staged):,} |",
        ]
        lines += [f"| {k} | {v:,} |" for k, v in self.mart_figures.items()]
        if "new cross-agency matches" in self.resolution_stats:
            lines.append("| new cross-agency matches (since the last run) | "
                         f"{self.resolution_stats['new cross-agency matches']:,} |")
        lines.append("")
        if self.drops:
            lines += ["## Drops", "",
                      "| drop | file | state | rows | quarantined | flagged | seconds | reason |",
                      "|---|---|---|---:|---:|---:|---:|---|"]
            lines += [f"| {d.drop_id[:12]} | {d.name} | {d.state} | {d.rows:,} | "
                      f"{d.quarantined:,} | {d.flagged:,} | {d.seconds:.1f} | "
                      f"{_drop_reason(d, self.read_before).replace('|', '/')} |"
                      for d in self.drops]
            lines.append("")
        warnings = [(d, w) for d in self.drops for w in d.warnings]
        if warnings:  # a mostly not met: the drop went on, the steward should look
            lines += ["## Warnings", ""]
            lines += [f"- {d.name} ({d.drop_id[:12]}): {w}" for d, w in warnings] + [""]
        if self.marts:
            lines += ["## Published marts", ""]
            lines += [f"- `{a}`: marts/{a}/{v}/fusion.duckdb"
                      f"{mart_build_note(self.mart_builds.get(a))}" for a, v in self.marts.items()]
            lines += ["", f"Query: `fusionlake sql \"select * from entity limit 10\"{lake}`",
                      ""]
        if self.marts_kept:
            lines += [f"Marts kept as they were (nothing their audiences may see changed): "
                      f"{', '.join(f'`{a}`' for a in self.marts_kept)}", ""]
        if self.data_docs and "://" in self.data_docs:  # no browser opens s3:// URLs
            lines += ["Validation reports (Data Docs): in the lake; open them with "
                      f"`fusionlake docs --serve 8000{lake}` or "
                      f"`fusionlake docs --sync DIR{lake}`", ""]
        elif self.data_docs:
            lines += [f"Validation reports (Data Docs): `{self.data_docs}`", ""]
        if self.problems:
            lines += ["## Problems", ""] + [f"- {p}" for p in self.problems] + [""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        lines += ["## Time per stage", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {name} | {sec:.1f} |" for name, sec in self.stages]
        steps = self.resolution_stats.get("seconds") or {}
        if steps:  # where a slow resolve spent its time, without rerunning it under a profiler
            lines += ["", "Resolve, by step (seconds; train_* are parts of splink_train): "
                      + ", ".join(f"{k} {v:.1f}" for k, v in steps.items())]
        lines += resolve_mode_lines(self.resolution_stats)
        # an agency writes file names, headers and values that reasons quote: their control
        # characters (terminal escapes) are shown, not sent to the operator's terminal, and
        # their HTML is text, not markup, where the summary is rendered (Prefect's UI shows it
        # as an artifact, a markdown viewer may open reports/runs/)
        return terminal_safe(html_as_text("\n".join(lines) + "\n"))


def _drop_reason(d: DropResult, read_before: dict[str, str]) -> str:
    """A drop's reason in the summary's table, with the earlier reading of its rows if any."""
    again = (f"rows read again ({read_before[d.drop_id]})"
             if d.drop_id in read_before and d.rows else "")
    return "; ".join(p for p in (d.reason, again) if p)


def read_before(store, entries: list[DropEntry]) -> dict[str, str]:
    """drop id -> why, for the drops about to be validated (``entries``, as the ledger had them
    before the run) whose rows an earlier run read and counted already: accepted after a hold,
    sent to be validated again, or validated again since their feed or suite changed. A drop
    stopped before it was read (no feed definition, an unreadable file) has no validation
    result in the lake and no rows counted: it is not listed. For :attr:`RunSummary.read_before`.
    """
    out = {}
    for e in entries:
        if e.decision not in ("accept", "retry") and e.state not in STOPPED:
            continue  # a drop received or validated only: new to the runs' summaries
        if not store.exists(layout.validation_results_key(e.agency, e.feed, e.drop_id)):
            continue
        out[e.drop_id] = ("accepted after a hold" if e.decision == "accept"
                          else "sent to be validated again" if e.decision == "retry"
                          else f"{e.state} before, validated again: its feed or suite changed")
    return out


def mart_builds(store, marts: dict[str, str]) -> dict[str, dict]:
    """How each mart version just published was made (fusionlake.pipeline.marts.MartBuild, in
    its LATEST): ``mode`` updated, rebuilt or copied, ``why``, seconds, records touched."""
    out = {}
    for audience, version in marts.items():
        pointer = latest(store, audience) or {}
        if pointer.get("version") == version and pointer.get("build"):
            out[audience] = pointer["build"]
    return out


def mart_build_note(build: dict | None) -> str:
    """`` (updated in place: 1,234 records touched, 2.1 s)`` or `` (rebuilt: why)``."""
    if not build:
        return ""
    if build["mode"] == "updated":
        return (f" (updated in place: {build.get('records_touched') or 0:,} records touched, "
                f"{build['seconds']:.1f} s)")
    return f" ({build['mode']}: {build['why']}, {build['seconds']:.1f} s)"


def resolve_mode_lines(resolution_stats: dict) -> list[str]:
    """Per audience group: whether resolve was incremental or full, and why."""
    modes = resolution_stats.get("resolve mode") or {}
    if not modes:
        return []
    return ["", "Resolve, per audience group:"] + [
        f"- {group}: {m['mode']} ({m['why']})" for group, m in modes.items()]
