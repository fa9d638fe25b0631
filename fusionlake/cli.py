"""The ``fusionlake`` command line (CONTRACT.md lists the commands users script against).

Each command is a small function that reads its arguments, calls library code and prints. Errors a
user can act on (:class:`UserError` and the library's own error types) print one line naming the
thing and what to do, and exit with status 2; anything else prints its traceback and exits with
status 1, as Python would. Neither ever shows credentials (an endpoint URL with a password in it,
a secret key): every message is redacted first.

The flows and expectations are imported by the commands that use them: Prefect and GX take
seconds to import, which ``drops`` or ``sql`` need not pay.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from fusionlake.lake import layout, zones
from fusionlake.lake.feeds import load_feeds
from fusionlake.lake.lease import LeaseHeld, LeaseLost
from fusionlake.lake.ledger import DropState, Ledger
from fusionlake.lake.settings import Settings, configure_offline
from fusionlake.lake.store import LakeError, open_store, redact
from fusionlake.pipeline.land import DeliveryError, deliver
from fusionlake.pipeline.marts import MartError, open_latest, run_query
from fusionlake.synth import generate
from transforms.evaluate import evaluate

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix; the message says what."""


# --------------------------------------------------------------------------------------------
# commands


def cmd_drop(args: argparse.Namespace, settings: Settings) -> int:
    _known_feed(settings, args.agency, args.feed)
    store = open_store(settings.lake)
    done = deliver(store, args.agency, args.feed, [Path(f) for f in args.files])
    for item in done:
        print(f"delivered {item.path} -> {store.uri}/{item.key}")
    return 0


def cmd_drops(args: argparse.Namespace, settings: Settings) -> int:
    entries = Ledger(open_store(settings.lake)).entries()
    if args.format == "json":
        print(json.dumps([asdict(e) for e in entries], ensure_ascii=False, indent=1))
        return 0
    rows = [(e.received_at[:19].replace("T", " "), e.agency, e.feed, e.file_name,
             e.sha256[:12], e.state, e.reason or "") for e in entries]
    _print_table(["received", "agency", "feed", "file", "sha256", "state", "reason"], rows,
                 title=f"drop ledger of {settings.lake}", empty="no drops yet")
    return 0


def cmd_land(args: argparse.Namespace, settings: Settings) -> int:
    from flows.land import land_drops

    results = land_drops(settings.lake)
    for r in results:
        print(f"{r.status:9} {r.landing_key}  ({r.message})")
    if not results:
        print("nothing new in landing/")
    return 0


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    if args.people < 1:
        raise UserError("--people must be at least 1")
    summary = generate(args.people, args.seed, Path(args.out))
    rows = [(name, f"{summary['rows'][name]:,}", str(path))
            for name, path in summary["files"].items()]
    _print_table(["feed", "rows", "file"], rows,
                 title=f"{summary['persons']:,} people, seed {args.seed}")
    print(f"truth: {Path(args.out) / 'truth.csv'}")
    return 0


def cmd_feeds(args: argparse.Namespace, settings: Settings) -> int:
    from expectations.suites import SuiteError, load_suite  # GX: seconds to import

    feedset = load_feeds(settings.feeds_path)
    errors: list[Exception] = list(feedset.errors)
    rows = []
    for f in feedset.feeds.values():
        # compile each suite now, so a broken steward override fails here, not in a run
        try:
            load_suite(f)
        except SuiteError as exc:
            errors.append(exc)
        override = f.suite_path.name if f.suite_path else "-"
        rows.append((f.name, ",".join(f.formats), f.encoding, f.source_key, override,
                     str(f.path)))
    _print_table(["feed", "format", "encoding", "key", "override", "source"], rows,
                 title="feeds")
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if errors else 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from flows.server import owned_server

    # without PREFECT_API_URL: a server that ends with this command (entered before Prefect
    # is imported, see flows/server.py)
    with owned_server():
        from flows.pipeline import pipeline

        summary = pipeline(lake=settings.lake, feeds_path=settings.feeds_path,
                           lease_wait=args.wait)
    Console().print(Markdown(summary.markdown()))
    return 1 if summary.problems else 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from flows.serve import serve

    serve(settings, cron=args.cron, interval=args.interval, port=args.port)
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    if (args.query is None) == (args.file is None):
        raise UserError("give either a QUERY or --file FILE")
    query = args.query if args.file is None else Path(args.file).read_text(encoding="utf-8")
    print(run_query(open_store(settings.lake), query, audience=args.audience, fmt=args.format))
    return 0


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings.lake)
    results = zones.read_validation_results(store)
    ledger = {e.drop_id: e for e in Ledger(store).entries() if e.state != DropState.DUPLICATE}
    if results.is_empty():
        print("no drop has been validated yet: run `fusionlake run`")
        return 0
    rows = []
    for (drop_id,), group in results.group_by(["drop_id"], maintain_order=True):
        entry = ledger.get(drop_id)
        failed = group.filter(~group["success"])
        detail = "; ".join(
            f"{r['expectation']}({r['column'] or ''}): {r['unexpected_count'] or 0}"
            for r in failed.iter_rows(named=True))
        rows.append((drop_id[:12], f"{entry.agency}/{entry.feed}" if entry else "?",
                     entry.file_name if entry else "?", entry.state if entry else "?",
                     f"{group.height - failed.height}/{group.height}", detail or "all passed"))
    _print_table(["drop", "feed", "file", "state", "passed", "failed expectations (rows)"],
                 rows, title="validation by drop")
    index = f"{layout.DATA_DOCS}/index.html"
    if store.exists(index):
        where = (f"{store.root / index}" if hasattr(store, "root") else f"{store.uri}/{index}")
        print(f"Data Docs: {where}")
    return 0


def cmd_review(args: argparse.Namespace, settings: Settings) -> int:
    resolution = zones.read_resolution(open_store(settings.lake))
    if resolution is None or resolution.get("review_pair") is None:
        print("no resolution yet: run `fusionlake run`")
        return 0
    queue = resolution["review_pair"].sort("priority", descending=True).head(args.limit)
    rows = [(r["record_id_l"], r["record_id_r"], f"{r['match_probability']:.3f}",
             r["reason"] or "", r["evidence"] or "") for r in queue.iter_rows(named=True)]
    _print_table(["record A", "record B", "probability", "why uncertain", "evidence"], rows,
                 title=f"review queue ({resolution['review_pair'].height} pairs)",
                 empty="the review queue is empty")
    print("decide with: fusionlake decide RECORD_A RECORD_B --same|--different --by NAME "
          "--why TEXT")
    return 0


def cmd_decide(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings.lake)
    known = zones.read_resolution(store)
    if known is not None:
        ids = set(known["entity_record"]["record_id"].to_list())
        missing = [r for r in (args.record_a, args.record_b) if r not in ids]
        if missing:
            raise UserError(f"unknown record id(s): {', '.join(missing)}; see `fusionlake review`")
    body = zones.append_decision(store, args.record_a, args.record_b,
                                 "same" if args.same else "different", args.by, args.why)
    print(f"recorded: {body['record_id_l']} and {body['record_id_r']} are {body['decision']} "
          f"(by {body['decided_by']}); it applies from the next run")
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    truth = pl.read_csv(args.truth, infer_schema=False)
    con = open_latest(open_store(settings.lake), "all")
    try:
        records = con.sql(
            "select entity_id, record_id, agency, feed, source_key from entity_record").pl()
    finally:
        con.close()
    scores = evaluate(records.select("entity_id", "record_id"), truth, records)
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else f"{v:,}") for k, v in scores.items()]
    _print_table(["measure", "value"], rows, title=f"published entities vs {args.truth}")
    return 0


# --------------------------------------------------------------------------------------------
# plumbing


def _known_feed(settings: Settings, agency: str, feed: str) -> None:
    feedset = load_feeds(settings.feeds_path)
    if f"{agency}/{feed}" not in feedset.feeds:
        known = ", ".join(sorted(feedset.feeds)) or "none"
        raise UserError(
            f"unknown feed {agency}/{feed}: known feeds are {known}; onboard a new one with a "
            "feed file in FUSIONLAKE_FEEDS_PATH (see docs/feeds.md)"
        )


def _print_table(headers: list[str], rows: list[tuple], title: str = "", empty: str = "") -> None:
    if not rows and empty:
        print(empty)
        return
    table = Table(title=title or None, show_lines=False)
    for h in headers:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*[str(v) for v in row])
    Console(width=max(120, Console().width)).print(table)


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace, Settings], int], str]] = {
    "drop": (cmd_drop, "deliver files to the landing area"),
    "drops": (cmd_drops, "the drop ledger: agency, feed, file, sha256, state, reason"),
    "land": (cmd_land, "land new deliveries in raw/ (the first step of `run`)"),
    "generate": (cmd_generate, "synthetic agency drops and their ground truth"),
    "feeds": (cmd_feeds, "the feed definitions found, with their source"),
    "run": (cmd_run, "the whole pipeline once over all new drops (Prefect flow)"),
    "serve": (cmd_serve, "the pipeline on its schedule"),
    "sql": (cmd_sql, "a SQL query on the latest published mart"),
    "report": (cmd_report, "validation by drop, and where the Data Docs are"),
    "review": (cmd_review, "record pairs waiting for a steward's decision"),
    "decide": (cmd_decide, "record a steward's decision on two records"),
    "evaluate": (cmd_evaluate, "precision, recall and F1 of the published entities"),
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--lake", default=argparse.SUPPRESS,
                        help="lake URI: a path or s3://bucket/prefix (default: $FUSIONLAKE_LAKE "
                             "or ./lakehouse)")
    parser = argparse.ArgumentParser(
        prog="fusionlake", parents=[common],
        description="An open data lake for cross-agency intelligence fusion.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = {name: sub.add_parser(name, parents=[common], help=help_, description=help_)
         for name, (_fn, help_) in COMMANDS.items()}

    p["drop"].add_argument("--agency", required=True)
    p["drop"].add_argument("--feed", required=True)
    p["drop"].add_argument("files", nargs="+", metavar="FILE")
    p["drops"].add_argument("--format", choices=["table", "json"], default="table")
    p["generate"].add_argument("--people", type=int, required=True)
    p["generate"].add_argument("--seed", type=int, default=1)
    p["generate"].add_argument("--out", required=True)
    p["run"].add_argument("--wait", type=float, default=0.0,
                          help="seconds to wait for another run on the same lake to finish")
    p["serve"].add_argument("--cron", default="*/15 * * * *",
                            help="schedule (default: every 15 minutes)")
    p["serve"].add_argument("--interval", type=float, default=None,
                            help="run every N seconds instead of the cron schedule")
    p["serve"].add_argument("--port", type=int, default=4200,
                            help="port of the local Prefect server started when "
                                 "PREFECT_API_URL is not set")
    p["sql"].add_argument("query", nargs="?", metavar="QUERY")
    p["sql"].add_argument("--file", help="a .sql file, e.g. sql/queries/NAME.sql")
    p["sql"].add_argument("--audience", default="all")
    p["sql"].add_argument("--format", choices=["table", "csv", "json"], default="table")
    p["review"].add_argument("--limit", type=int, default=20)
    p["decide"].add_argument("record_a", metavar="RECORD_A")
    p["decide"].add_argument("record_b", metavar="RECORD_B")
    verdict = p["decide"].add_mutually_exclusive_group(required=True)
    verdict.add_argument("--same", action="store_true")
    verdict.add_argument("--different", action="store_true")
    p["decide"].add_argument("--by", required=True, help="who decides")
    p["decide"].add_argument("--why", required=True, help="the reason, for the audit trail")
    p["evaluate"].add_argument("--truth", required=True, help="truth.csv of `generate`")
    return parser


def _quiet_libraries() -> None:
    # Splink's EM notes (levels a small sample lacks) and GX's temp-folder notice are nothing a
    # person running the pipeline can act on; their errors still show.
    logging.getLogger("splink").setLevel(logging.ERROR)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    configure_offline()
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    settings = Settings.from_env(getattr(args, "lake", None))
    fn = COMMANDS[args.command][0]
    try:
        return fn(args, settings)
    except Exception as exc:
        if _is_user_error(exc):
            print(redact(f"fusionlake {args.command}: {exc}"), file=sys.stderr)
            return EXIT_USER_ERROR
        print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        return 1


def _is_user_error(exc: Exception) -> bool:
    return isinstance(exc, UserError | DeliveryError | LakeError | LeaseHeld | LeaseLost
                      | MartError)


if __name__ == "__main__":
    sys.exit(main())
