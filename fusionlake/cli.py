"""The ``fusionlake`` command line (README.md lists the commands users script against).

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
import contextlib
import csv
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import unicodedata
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from fusionlake.lake import audit, layout, zones
from fusionlake.lake.feeds import load_feeds
from fusionlake.lake.lease import LeaseHeld, LeaseLost
from fusionlake.lake.ledger import Ledger, StewardError
from fusionlake.lake.settings import Settings, SettingsError, configure_offline
from fusionlake.lake.store import (
    LakeError,
    LocalStore,
    ObjectStore,
    causes,
    first_line,
    open_store,
    redact,
)
from fusionlake.pipeline.land import DeliveryError, deliver, known_drop
from fusionlake.pipeline.marts import (
    MAX_ROWS,
    MartError,
    catalogue,
    mart_path,
    open_latest,
    run_query,
    saved_queries,
    spreadsheet_safe,
    terminal_safe,
)
from fusionlake.pipeline.report import FAIL_ON, drop_reports, finding_text
from fusionlake.synth import generate, generate_follow_up
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
    ledger = Ledger(store)
    for item in done:
        known = known_drop(ledger, args.agency, args.feed, item.sha256)
        # said, not left for the next run to skip without a word
        again = (f" (the same bytes are drop {known.drop_id}, {known.state}: not ingested "
                 "again)" if known is not None else "")
        print(f"delivered {item.path} -> {store.uri}/{item.key}{again}")
    return 0


def cmd_drops(args: argparse.Namespace, settings: Settings) -> int:
    ledger = Ledger(open_store(settings.lake))
    entries = ledger.entries()
    for drop_id in ledger.damaged:  # listed, not a traceback of every command
        print(f"warning: drop {drop_id} is left out: an event of it in ledger/drops/{drop_id}/ "
              "was removed or written over", file=sys.stderr)
    if args.format == "json":
        print(json.dumps([asdict(e) for e in entries], ensure_ascii=False, indent=1))
        return 1 if ledger.damaged else 0
    rows = [(e.received_at[:19].replace("T", " "), e.agency, e.feed, e.file_name,
             e.sha256[:12], e.state, e.reason or "") for e in entries]
    _print_table(["received", "agency", "feed", "file", "sha256", "state", "reason"], rows,
                 title=f"drop ledger of {settings.lake}", empty="no drops yet")
    return 1 if ledger.damaged else 0


def cmd_land(args: argparse.Namespace, settings: Settings) -> int:
    from flows.land import land_drops

    _check_prefect_server()
    results = land_drops(settings.lake)
    for r in results:
        print(f"{r.status:9} {r.landing_key}  ({r.message})")
    if not results:
        print("nothing new in landing/")
    return 0


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    if args.people < 1:
        raise UserError("--people must be at least 1")
    _a_folder("--out", args.out)
    if args.follow_up is not None:
        if args.follow_up < 1:
            raise UserError("--follow-up must be at least 1 row")
        summary = generate_follow_up(args.people, args.seed, Path(args.out), args.follow_up)
        title = (f"follow-up drop of {summary['persons']:,} people, seed {args.seed}: "
                 f"{summary['known']:,} rows of people already seen")
    else:
        summary = generate(args.people, args.seed, Path(args.out))
        title = f"{summary['persons']:,} people, seed {args.seed}"
    rows = [(name, f"{summary['rows'][name]:,}", str(path))
            for name, path in summary["files"].items()]
    _print_table(["feed", "rows", "file"], rows, title=title)
    print(f"truth: {Path(args.out) / 'truth.csv'}")
    return 0


def cmd_feeds(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "action", None) == "draft":
        return cmd_feeds_draft(args, settings)
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
        # who may see its rows, after its agency's sharing agreement (capped: "<=" the cap)
        shared = ",".join(f.releasable_to) + (
            f" (capped <= {','.join(f.share_limit)})" if f.share_limit is not None else "")
        rows.append((f.name, ",".join(f.formats), f.encoding, f.source_key, shared, override,
                     str(f.path)))
    if args.format == "json":
        print(json.dumps([{"feed": f.name, "formats": f.formats, "encoding": f.encoding,
                           "key": f.source_key, "releasable_to": f.releasable_to,
                           "share_limit": f.share_limit,
                           "override": f.suite_path.name if f.suite_path else None,
                           "source": str(f.path)} for f in feedset.feeds.values()],
                         ensure_ascii=False, indent=1))
    else:
        _print_table(["feed", "format", "encoding", "key", "releasable to", "override",
                      "source"], rows, title="feeds")
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if errors else 0


def cmd_feeds_draft(args: argparse.Namespace, settings: Settings) -> int:
    """``feeds draft FILE``: a feed file for a steward to review, from a sample of the export.

    ``--out`` a folder (any path not ending in .yaml or .yml) writes
    ``<folder>/<agency>/<feed>.yaml`` (the layout of a folder in FUSIONLAKE_FEEDS_PATH); a .yaml
    path writes that file; without it the draft goes to stdout.
    An existing file is never overwritten: it may hold a steward's review.
    """
    from fusionlake.pipeline.draft import DraftError, draft_feed

    out = Path(args.out) if args.out else None
    if out is not None and (out.is_dir() or out.suffix not in (".yaml", ".yml")):
        out = out / args.agency / f"{args.feed}.yaml"  # a folder, existing or not
    if out is not None and out.exists():
        raise UserError(f"{out} exists; review or remove it, or give another --out")
    try:
        result = draft_feed(Path(args.file), args.agency, args.feed, check=not args.no_check,
                            out=out)
    except DraftError as exc:
        raise UserError(str(exc)) from None
    guesses = result.draft.columns
    unsure = [g.name for g in guesses if g.sure == "low"]
    if out is None:
        sys.stdout.write(result.text)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result.text, encoding="utf-8")
    print(f"drafted {args.agency}/{args.feed} from {args.file}: {len(guesses)} columns, "
          f"{sum(g.target != 'ignore' for g in guesses)} mapped"
          + (f", check {', '.join(unsure)}" if unsure else "")
          + (f"; wrote {out}" if out else ""), file=sys.stderr)
    if result.check:
        print(result.check, file=sys.stderr)
    return 0


def _orchestration_lost(settings: Settings, run_id: str, api: str, exc: Exception,
                        fmt: str = "markdown") -> int:
    """After a run whose Prefect server stopped answering (killed, restarted): Prefect could
    not record how the run ended, but the pipeline's work does not depend on it. Say so, and
    what the lake holds: the run's summary when it got that far (printed unless ``fmt`` is
    json, which a script would read as JSON: the summary in the lake is markdown)."""
    from flows.tasks import PrefectUnreachable

    # the run's own account of it, when it stopped for this (Prefect's failure to record the
    # end then follows it in the chain of exceptions)
    cause = next((e for e in causes(exc) if isinstance(e, PrefectUnreachable)), exc)
    print(f"fusionlake run: the Prefect server at {api} stopped answering during run {run_id} "
          f"({redact(first_line(cause))}), so Prefect has no record of how the run ended.",
          file=sys.stderr)
    key = layout.run_report_key(run_id)
    try:
        report = open_store(settings.lake).get(key).decode()
    except Exception:  # NotFound, or a lake that cannot be read now either
        report = None
    if report is None:
        print("The run left no summary in the lake: it found nothing new, or stopped before "
              "its end. What it completed is kept, and the next run takes up the rest "
              "(`fusionlake drops` lists every drop's state).", file=sys.stderr)
    elif fmt == "json":
        print(f"The pipeline finished its work all the same; its summary is {key} in the lake.",
              file=sys.stderr)
    else:
        print(f"The pipeline finished its work all the same; its summary ({key} in the lake) "
              "follows.", file=sys.stderr)
        sys.stdout.write(report)
    return 1


def _check_prefect_server(attempts: int = 3) -> None:
    """Refuse at once when ``PREFECT_API_URL`` names a Prefect server that does not answer
    (asked ``attempts`` times, a second apart: a busy server may be slow to).

    Prefect's client failed a few seconds later anyway: ``serve`` with a 100-line ConnectError
    traceback, ``run`` saying that a server it had never reached "stopped answering".
    """
    from flows.server import answers

    api = os.environ.get("PREFECT_API_URL")
    if not api:
        return
    for attempt in range(attempts):
        if answers(api):
            return
        if attempt < attempts - 1:
            time.sleep(1)
    raise UserError(f"the Prefect server at {api} (PREFECT_API_URL) does not answer: start it, "
                    "or unset PREFECT_API_URL and fusionlake starts one of its own")


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from flows.server import answers, owned_server

    _check_prefect_server()

    # without PREFECT_API_URL: a server that ends with this command (entered before Prefect
    # is imported, see flows/server.py)
    with owned_server() as url:
        from flows.pipeline import pipeline
        from fusionlake.pipeline.run import new_run_id

        run_id = new_run_id()
        try:
            summary = pipeline(lake=settings.lake, feeds_path=settings.feeds_path,
                               run_id=run_id, lease_wait=args.wait, full=args.full)
        except Exception as exc:
            api = url or os.environ.get("PREFECT_API_URL")
            if not api or answers(api):
                raise
            return _orchestration_lost(settings, run_id, api, exc, args.format)
    if args.format == "json":
        print(json.dumps(summary.as_json(), ensure_ascii=False, indent=1))
    elif sys.stdout.isatty():
        Console().print(Markdown(summary.markdown()))
    else:  # piped or redirected: the markdown itself, no 80-column reflow of the tables
        sys.stdout.write(summary.markdown())
    if summary.problems:
        return 1
    failed = summary.drops_in(args.fail_on)
    if failed:
        print(f"fusionlake run: {len(failed)} drop(s) {'/'.join(sorted(set(args.fail_on)))}: "
              + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.interval is None:  # checked before any server starts
        from prefect.client.schemas.schedules import CronSchedule
        from pydantic import ValidationError

        try:
            CronSchedule(cron=args.cron)
        except ValidationError:
            raise UserError(f"--cron {args.cron!r} is not a cron schedule (five fields: minute "
                            "hour day month weekday, e.g. '*/15 * * * *')") from None
    elif args.interval <= 0:
        raise UserError(f"--interval must be more than 0 seconds, not {args.interval}")
    _check_prefect_server()
    from flows.serve import AlreadyServed, serve

    try:
        serve(settings, cron=args.cron, interval=args.interval, port=args.port)
    except AlreadyServed as exc:
        raise UserError(str(exc)) from None
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    if args.list:
        if args.query is not None or args.file is not None:  # it would be ignored
            raise UserError("--list takes no QUERY or --file: it lists the tables and saved "
                            "questions (DESCRIBE <name> shows one table's columns)")
        return _list_mart(args, settings)
    if (args.query is None) == (args.file is None):
        raise UserError("give either a QUERY (SQL or a saved question's name) or --file FILE "
                        "(- for stdin); --list shows the tables and saved questions")
    if args.file == "-":
        query = sys.stdin.read()
    elif args.file is not None:
        query = _read_query(args.file)
    else:
        query = args.query
    if args.max_rows < 0:
        raise UserError(f"--max-rows must be 0 (all rows) or more, not {args.max_rows}")
    store = open_store(settings.lake)
    _check_audience(store, args.audience)
    out = run_query(store, query, audience=args.audience, fmt=args.format,
                    who=_who(args), max_rows=args.max_rows)
    sys.stdout.write(out if out.endswith("\n") or not out else out + "\n")
    return 0


def _list_mart(args: argparse.Namespace, settings: Settings) -> int:
    """``sql --list``: the mart's tables, views and macros with their comments, and the saved
    questions (the data dictionary's contents; the page is reports/dictionary/index.html)."""
    relations = catalogue(open_store(settings.lake), args.audience)
    queries = saved_queries()
    if args.format == "json":
        print(json.dumps({
            "relations": [{"name": r.name, "kind": r.kind, "comment": r.comment,
                           "columns": [asdict(c) for c in r.columns]} for r in relations],
            "saved_questions": [{"name": q.name, "question": q.question}
                                for q in queries.values()],
        }, ensure_ascii=False, indent=1))
        return 0
    rows = [(r.kind, r.name, r.comment or "") for r in relations]
    rows += [("question", q.name, q.question) for q in queries.values()]
    if args.format == "csv":
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["kind", "name", "description"])
        out.writerows([[spreadsheet_safe(v) for v in row] for row in rows])
        return 0
    _print_table(["kind", "name", "description"], rows,
                 title=f"mart of audience {args.audience}: DESCRIBE <name> shows its columns; "
                       "fusionlake sql <question> runs a saved question")
    return 0


def cmd_mart_path(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings.lake)
    _check_audience(store, args.audience)
    print(mart_path(store, args.audience))
    return 0


def _read_query(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (saved questions are in sql/queries/)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot be read: {getattr(exc, 'strerror', None) or exc}") \
            from None


def _who(args: argparse.Namespace) -> str:
    """Who runs the command, for the audit trail: --as, else the account the command runs as
    (not ``$USER``, which anyone sets; the trail keeps the account beside ``--as`` too)."""
    return getattr(args, "as_", None) or audit.account()


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings.lake)
    reports = drop_reports(store, load_feeds(settings.feeds_path))
    if args.format == "json":
        print(json.dumps([r.as_json() for r in reports], ensure_ascii=False, indent=1))
        return 0
    if not reports:
        print("no drops yet: deliver with `fusionlake drop`, then `fusionlake run`")
        return 0
    rows = [(r.drop_id[:12], f"{r.agency}/{r.feed}", r.file, r.received, r.state,
             _count(r.rows), _count(r.staged), _count(r.superseded), _count(r.flagged),
             _count(r.quarantined), "yes" if r.held else "", "-" if r.expectations is None
             else f"{r.passed}/{r.expectations}")
            for r in reports]
    _print_table(["drop", "feed", "file", "received (UTC)", "state", "rows", "staged",
                  "superseded since", "flagged", "quarantined", "held", "checks passed"], rows,
                 title=f"validation by drop, {settings.lake}", width=150)
    # the findings are long: one line each under the table rather than a squeezed column
    print("\nchecks that failed or found bad values (rows), and why a drop was not validated:")
    for r in reports:
        print(f"  {r.drop_id[:12]} {r.agency}/{r.feed}/{terminal_safe(r.file)}: "
              f"{terminal_safe(_findings(r))}")
    print(_data_docs_hint(store))
    return 0


def _count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}"


def _findings(r) -> str:
    """Failed checks first, then those that found bad values within their mostly."""
    if r.expectations is None:  # never validated: the reader's or the ledger's reason
        return r.reason or "not validated yet"
    parts = [finding_text(f) for f in sorted(r.findings, key=lambda f: f["success"])]
    return "; ".join(parts) or "all passed, no bad values"


def _data_docs_hint(store) -> str:
    """Where a browser opens the Data Docs: a file on a local lake, a command on S3."""
    index = f"{layout.DATA_DOCS}/index.html"
    if not store.exists(index):
        return "Data Docs: none yet (a run builds them)"
    if isinstance(store, LocalStore):
        return f"Data Docs: {store.path(index).resolve().as_uri()}"
    return ("Data Docs are in the lake; open them with `fusionlake docs --serve 8000` or copy "
            "them with `fusionlake docs --sync DIR`")


def cmd_docs(args: argparse.Namespace, settings: Settings) -> int:
    """Where a browser opens the Data Docs: the lake's own folder, a synced copy, or a server.

    Browsers open neither ``s3://`` URLs nor objects behind S3 credentials, so an S3 lake's site
    is copied to a local folder (``--sync DIR``) or served from a temporary copy on 127.0.0.1
    (``--serve PORT``; 0 picks a free port).
    """
    store = open_store(settings.lake)
    prefix = f"{layout.DATA_DOCS}/"
    keys = store.list(layout.DATA_DOCS)
    if f"{prefix}index.html" not in keys:
        raise UserError(f"no Data Docs in {settings.lake} yet: `fusionlake run` builds them")
    if args.sync is None and args.serve is None:
        if isinstance(store, LocalStore):
            print(store.path(f"{prefix}index.html").resolve().as_uri())
            return 0
        raise UserError(f"{settings.lake} is not a folder a browser can open: give --sync DIR "
                        "(a local copy) or --serve PORT (a local web server)")
    if args.sync is not None:
        _a_folder("--sync", args.sync)
        root = _sync_docs(store, keys, prefix, Path(args.sync))
        print((root / "index.html").resolve().as_uri())
        if args.serve is None:
            return 0
    elif isinstance(store, LocalStore):
        root = store.path(layout.DATA_DOCS)
    else:  # a copy for as long as it is served (Ctrl-C or SIGTERM end both)
        import shutil
        import tempfile

        from fusionlake.pipeline.run import stale_run_folders

        for old in stale_run_folders():  # copies that a SIGKILL of a server left behind
            if old.name.startswith("fusionlake-docs-"):
                shutil.rmtree(old, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix=f"fusionlake-docs-{os.getpid()}-") as copy:
            return _serve_folder(_sync_docs(store, keys, prefix, Path(copy)), args.serve)
    return _serve_folder(root, args.serve)


def _a_folder(option: str, path: str) -> None:
    """A folder the command makes if missing: not a file that is there."""
    if Path(path).exists() and not Path(path).is_dir():
        raise UserError(f"{option} {path}: that is a file; give a folder (made if missing)")


def _sync_docs(store, keys: list[str], prefix: str, out: Path) -> Path:
    """Copy the site's objects into ``out`` (pages of drops no longer listed are removed)."""
    out.mkdir(parents=True, exist_ok=True)
    wanted = {out / k.removeprefix(prefix) for k in keys}
    for key in keys:
        store.download_file(key, out / key.removeprefix(prefix))
    for old in (p for p in out.rglob("*.html") if p not in wanted):
        old.unlink()
    print(f"synced {len(keys)} files of the Data Docs to {out}", file=sys.stderr)
    return out


def _serve_folder(root: Path, port: int) -> int:
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            pass  # a steward reading pages needs no access log

    handler = functools.partial(Quiet, directory=str(root))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise UserError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror}") from None
    print(f"Data Docs: http://127.0.0.1:{server.server_address[1]}/index.html "
          "(Ctrl-C stops)", flush=True)
    # SIGTERM (a service manager, `kill`) stops it as Ctrl-C does, so that what the caller
    # made for it (an S3 lake's temporary copy) is removed, not left in /tmp
    stop = _raise_interrupt if threading.current_thread() is threading.main_thread() else None
    previous = signal.signal(signal.SIGTERM, stop) if stop else None
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if stop:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


#: Fields of a record compared side by side in `review`: agreeing or disagreeing is marked.
_COMPARED = ("name_original", "name_latin", "birth_date", "birth_date_precision", "sex",
             "nationality", "national_id", "passport_no", "other_id")
#: Where each record comes from: shown, never marked (two agencies differ by design).
_PROVENANCE = ("agency", "feed", "drop_id", "source_row")


def _side_by_side(evidence: str | None) -> list[dict]:
    """The two records' fields of a review pair: field, A, B and whether they agree."""
    facts = json.loads(evidence) if evidence else {}
    left, right = facts.get("l") or {}, facts.get("r") or {}
    out = []
    for name in (*_PROVENANCE, *_COMPARED):
        a, b = left.get(name), right.get(name)
        if a is None and b is None:
            continue
        agree = None  # nothing to compare when a side is empty
        if name in _COMPARED and a not in (None, "") and b not in (None, ""):
            agree = str(a).strip().casefold() == str(b).strip().casefold()
        out.append({"field": name, "a": a, "b": b, "agree": agree})
    return out


def cmd_review(args: argparse.Namespace, settings: Settings) -> int:
    resolution = zones.read_resolution(open_store(settings.lake))
    if resolution is None or resolution.get("review_pair") is None:
        if args.format == "json":
            print("[]")
            return 0
        print("no resolution yet: run `fusionlake run`")
        return 0
    pairs = resolution["review_pair"]
    queue = pairs.sort(["priority", "record_id_l", "record_id_r"],
                       descending=[True, False, False]).head(args.limit)
    listed = [{"record_id_l": r["record_id_l"], "record_id_r": r["record_id_r"],
               "match_probability": r["match_probability"], "priority": r["priority"],
               "reason": r["reason"], "fields": _side_by_side(r["evidence"])}
              for r in queue.iter_rows(named=True)]
    if args.format == "json":
        print(json.dumps(listed, ensure_ascii=False, indent=1, default=str))
        return 0
    if not listed:
        print("the review queue is empty")
        return 0
    print(f"review queue: {pairs.height:,} pairs, the {len(listed)} most informative first "
          "(= agree, ≠ disagree)")
    console = Console(width=max(120, Console().width))
    for i, p in enumerate(listed, 1):
        prob = "-" if p["match_probability"] is None else f"{p['match_probability']:.3f}"
        # the heading is printed, not a table title: rich would wrap it to the table's width
        print(f"\n{i}. {terminal_safe(p['reason'] or '')}: probability {prob}, priority "
              f"{p['priority']:.3f}")
        table = Table()
        table.add_column("field", no_wrap=True)
        table.add_column(f"A {p['record_id_l']}", overflow="fold")
        table.add_column("", no_wrap=True)
        table.add_column(f"B {p['record_id_r']}", overflow="fold")
        for f in p["fields"]:
            style = "bold" if f["agree"] is False else ""
            a, b = ("" if v is None else terminal_safe(str(v)) for v in (f["a"], f["b"]))
            table.add_row(f["field"], Text(a, style=style),
                          {True: "=", False: "≠", None: ""}[f["agree"]], Text(b, style=style))
        console.print(table)
    print("decide with: fusionlake decide RECORD_A RECORD_B --same|--different --by NAME "
          "--why TEXT")
    return 0


def cmd_decide(args: argparse.Namespace, settings: Settings) -> int:
    if args.record_a == args.record_b:
        raise UserError(f"{args.record_a} is one record: a decision needs two different ones")
    store = open_store(settings.lake)
    decision = "same" if args.same else "different" if args.different else "undo"
    # an undo names records that may have left the lake since (a later drop superseded one)
    ids = None if decision == "undo" else _record_ids(store)
    if ids is not None:
        missing = [r for r in (args.record_a, args.record_b) if r not in ids]
        if missing:
            raise UserError(f"unknown record id(s): {', '.join(missing)}; see `fusionlake review`")
    if decision == "undo":
        left, right = sorted((args.record_a, args.record_b))
        standing = zones.read_decisions(store).filter(
            (pl.col("record_id_l") == left) & (pl.col("record_id_r") == right))
        if standing.is_empty():
            raise UserError(f"no decision on {left} and {right} to undo; see "
                            "`fusionlake decisions`")
    body = zones.append_decision(store, args.record_a, args.record_b, decision, args.by,
                                 args.why)
    audit.record(store, "decision", who=args.by, login=_who(args), **{
        k: body[k] for k in ("record_id_l", "record_id_r", "decision", "reason")})
    if decision == "undo":
        print(f"recorded: the decision on {body['record_id_l']} and {body['record_id_r']} is "
              f"withdrawn (by {body['decided_by']}); from the next run the model decides")
        return 0
    print(f"recorded: {body['record_id_l']} and {body['record_id_r']} are {body['decision']} "
          f"(by {body['decided_by']}); it applies from the next run")
    return 0


def _record_ids(store: ObjectStore) -> set[str] | None:
    """The records of the latest resolution, or None before the first (its entity_record's
    record_id column alone: the whole resolution is hundreds of MB at a million people)."""
    keys = zones.resolution_keys(store)
    if keys is None:
        return None
    return set(zones.read_frame(store, keys["entity_record"], ["record_id"])["record_id"])


def _decision_status(history: pl.DataFrame, ids: set[str] | None = None) -> list[str]:
    """Per decision: standing (the pair's one in force), superseded, undone, or undo; a
    standing one naming a record not in ``ids`` (the latest resolution's) is ``not applied``."""
    status = [""] * history.height
    last: dict[tuple, int] = {}  # the pair's latest same/different not yet undone
    for i, r in enumerate(history.iter_rows(named=True)):
        pair = (r["record_id_l"], r["record_id_r"])
        if r["decision"] == "undo":
            status[i] = "undo"
            if pair in last:
                status[last.pop(pair)] = "undone"
            continue
        if pair in last:
            status[last[pair]] = "superseded"
        last[pair] = i
        status[i] = "standing"
    if ids is not None:
        for i in last.values():
            if not {history["record_id_l"][i], history["record_id_r"][i]} <= ids:
                status[i] = "not applied"
    return status


def cmd_decisions(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings.lake)
    history = zones.read_decisions(store, include_undone=True)
    if args.record:
        history = history.filter((pl.col("record_id_l") == args.record)
                                 | (pl.col("record_id_r") == args.record))
    status = _decision_status(history, _record_ids(store) if history.height else None)
    listed = [{**r, "decided_at": r["decided_at"].isoformat(), "status": st}
              for r, st in zip(history.iter_rows(named=True), status, strict=True)]
    if args.format == "json":
        print(json.dumps(listed, ensure_ascii=False, indent=1))
        return 0
    rows = [(d["decided_at"][:19].replace("T", " "), d["record_id_l"], d["record_id_r"],
             d["decision"], d["status"], d["decided_by"] or "", d["reason"] or "")
            for d in listed]
    _print_table(["when (UTC)", "record A", "record B", "decision", "status", "by", "why"],
                 rows, title="steward decisions, oldest first (the standing one per pair "
                 "applies to every run; 'not applied': a record it names is no longer in the "
                 "lake, superseded by a later drop or withdrawn, and it applies again if the "
                 "record comes back)",
                 empty=f"no decisions on {args.record}" if args.record else "no decisions yet")
    return 0


def _steward(decision: str, args: argparse.Namespace, settings: Settings) -> int:
    ledger = Ledger(open_store(settings.lake))
    found = ledger.find(args.drop)
    if len(found) != 1:
        listed = "; ".join(f"{e.drop_id} ({e.agency}/{e.feed}/{e.file_name}, {e.state})"
                           for e in found[:5])
        raise UserError(f"no drop {args.drop!r} in the ledger; see `fusionlake drops`"
                        if not found else f"{args.drop!r} names {len(found)} drops: {listed}; "
                        "give more of the drop id")
    by, why = args.by, args.why
    if decision == "retry" and found[0].decision == "reject" and not (by and why):
        raise UserError(f"drop {found[0].drop_id} ({found[0].label}) was rejected for good by a "
                        "steward; sending it back undoes that decision: give --by and --why")
    by, why = by or _who(args), why or "retry requested"
    store = ledger.store
    entry = ledger.decide(found[0].drop_id, decision, by, why)
    audit.record(store, "acceptance", who=by, login=_who(args), decision=decision,
                 drop_id=entry.drop_id, feed=f"{entry.agency}/{entry.feed}", reason=why)
    then = {"accept": "the next `fusionlake run` stages it",
            "reject": "it stays rejected (`fusionlake retry` brings it back)",
            "retry": "the next `fusionlake run` validates it again"}[decision]
    print(f"{decision}: drop {entry.drop_id} ({entry.agency}/{entry.feed}/{entry.file_name}, "
          f"was {entry.state}); {then}")
    return 0


def cmd_accept(args: argparse.Namespace, settings: Settings) -> int:
    return _steward("accept", args, settings)


def cmd_reject(args: argparse.Namespace, settings: Settings) -> int:
    return _steward("reject", args, settings)


def cmd_retry(args: argparse.Namespace, settings: Settings) -> int:
    return _steward("retry", args, settings)


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    found = audit.frame(open_store(settings.lake), args.kind).tail(args.limit)
    if args.format == "json":
        print(json.dumps([json.loads(d) for d in found["detail"]], ensure_ascii=False, indent=1))
        return 0
    rows = [(r["at"].strftime("%Y-%m-%d %H:%M:%S"), r["kind"], _who_shown(r),
             r["audience"] or "", "" if r["rows"] is None else f"{r['rows']:,}",
             _outcome(r["detail"]), r["summary"])
            for r in found.iter_rows(named=True)]
    _print_table(["when (UTC)", "kind", "who", "audience", "rows", "outcome", "what"], rows,
                 title=f"audit trail of {settings.lake}",
                 empty=f"no {args.kind} entries in the audit trail" if args.kind
                 else "the audit trail is empty")
    return 0


def _who_shown(row: dict) -> str:
    """An entry's ``who``, with the account that wrote it when that is another name (``--as``):
    ``chief (as root)``."""
    who, account = row["who"] or "", json.loads(row["detail"]).get("account")
    return f"{who} (as {account})" if account and account != who else who


def _outcome(detail: str, width: int = 60) -> str:
    """An audit entry's outcome, one short line: "ok", or why a query was refused (a refused
    query must not read like an answered one; ``--format json`` has the whole message)."""
    outcome = str(json.loads(detail).get("outcome") or "")
    first = outcome.splitlines()[0] if outcome else ""
    return first if len(first) <= width else first[:width - 1] + "…"


#: The columns of a truth file (README: `truth.csv`).
TRUTH_COLUMNS = ("agency", "feed", "source_key", "person_id")


def _read_truth(path: str) -> pl.DataFrame:
    """The truth file, or a one-line error: missing, unreadable, without the columns, or empty
    (an empty truth has no pairs to miss, and would score a perfect 1.0)."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file (a truth file is `generate`'s truth.csv)")
    try:
        truth = pl.read_csv(path, infer_schema=False)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV file: {str(exc).splitlines()[0]}") from None
    missing = [c for c in TRUTH_COLUMNS if c not in truth.columns]
    if missing:
        raise UserError(f"{path}: lacks the column(s) {', '.join(missing)}; a truth file has "
                        f"the columns {','.join(TRUTH_COLUMNS)}")
    if truth.is_empty():
        raise UserError(f"{path}: no rows, so nothing to score against")
    # a short row reads as nulls, a blank field as an empty string: neither names a person
    blank = truth.with_row_index("line", offset=2).filter(pl.any_horizontal(
        pl.col(c).is_null() | (pl.col(c).str.strip_chars() == "") for c in TRUTH_COLUMNS))
    if blank.height:
        row = blank.row(0, named=True)
        empty = [c for c in TRUTH_COLUMNS if not (row[c] or "").strip()]
        raise UserError(f"{path}: line {row['line']} has no {', '.join(empty)} (every row names "
                        f"{','.join(TRUTH_COLUMNS)}); {blank.height:,} such row(s)")
    return truth


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    truth = _read_truth(args.truth)
    store = open_store(settings.lake)
    _check_audience(store, "all")
    con = open_latest(store, "all")
    try:
        records = con.sql(
            "select entity_id, record_id, agency, feed, source_key from entity_record").pl()
    finally:
        con.close()
    try:
        scores = evaluate(records.select("entity_id", "record_id"), truth, records)
    except ValueError as exc:  # a source key given two persons: the file's fault
        raise UserError(f"{args.truth}: {exc}") from None
    if not scores["records"]:  # nothing to miss: every measure would read a perfect 1.0
        raise UserError(f"{args.truth}: names none of the {records.height:,} published records "
                        "(by agency, feed and source_key): is it the truth of this lake's drops?")
    if args.format == "json":
        print(json.dumps(scores, indent=1))
        return 0
    rows = [(k, f"{v:.4f}" if isinstance(v, float) else f"{v:,}") for k, v in scores.items()]
    _print_table(["measure", "value"], rows, title=f"published entities vs {args.truth}")
    return 0


def _check_audience(store, audience: str) -> None:
    """A one-line error naming the audiences that have a mart, for one that has none."""
    from fusionlake.pipeline.marts import latest

    if latest(store, audience) is not None:
        return
    known = sorted({k.split("/")[1] for k in store.list(layout.MARTS)
                    if k.count("/") >= 2 and k.endswith("/LATEST")})
    if not known:
        raise UserError(f"no mart published in {store.uri} yet: run `fusionlake run` first")
    raise UserError(f"no mart for audience {audience!r}: the audiences are {', '.join(known)}")


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


def _print_table(headers: list[str], rows: list[tuple], title: str = "", empty: str = "",
                 width: int = 120) -> None:
    if not rows and empty:
        print(empty)
        return
    table = Table(title=title or None, show_lines=False)
    for i, h in enumerate(headers):
        # short columns keep their width, so the long ones (reasons, findings) get the rest
        short = max([len(h), *(len(str(r[i])) for r in rows)]) <= 20
        table.add_column(h, overflow="fold", no_wrap=short)
    for row in rows:  # Text: no rich markup, no terminal escapes from the data
        table.add_row(*[Text(terminal_safe(str(v))) for v in row])
    # piped or redirected: as wide as the table needs, no squeeze into 80 columns
    wide = max(width, Console().width) if sys.stdout.isatty() else 10_000
    Console(width=wide).print(table)


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace, Settings], int], str]] = {
    "drop": (cmd_drop, "deliver files to the landing area"),
    "drops": (cmd_drops, "the drop ledger: agency, feed, file, sha256, state, reason"),
    "land": (cmd_land, "land new deliveries in raw/ (the first step of `run`)"),
    "generate": (cmd_generate, "synthetic agency drops and their ground truth"),
    "feeds": (cmd_feeds, "the feed definitions found, with their source"),
    "run": (cmd_run, "the whole pipeline once over all new drops (Prefect flow)"),
    "serve": (cmd_serve, "the pipeline on its schedule"),
    "sql": (cmd_sql, "a SQL query, or a saved question by name, on the latest published mart"),
    "mart-path": (cmd_mart_path, "the path of the current mart file, for any DuckDB client"),
    "report": (cmd_report, "validation by drop, and where the Data Docs are"),
    "docs": (cmd_docs, "open the Data Docs: a local path, a synced copy or a local web server"),
    "review": (cmd_review, "record pairs waiting for a steward's decision"),
    "decide": (cmd_decide, "record a steward's decision on two records, or undo it"),
    "decisions": (cmd_decisions, "the steward decisions, oldest first, with which stand"),
    "accept": (cmd_accept, "accept a held drop: the next run stages it (recorded in the ledger)"),
    "reject": (cmd_reject, "reject a held drop for good (recorded in the ledger)"),
    "retry": (cmd_retry, "validate a rejected or held drop again in the next run"),
    "audit": (cmd_audit, "the audit trail: queries, decisions and acceptances, oldest first"),
    "evaluate": (cmd_evaluate, "precision, recall and F1 of the published entities"),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fusionlake")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "unknown (not installed)"


def _fail_on(value: str) -> list[str]:
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    wrong = [k for k in kinds if k not in FAIL_ON]
    if wrong or not kinds:
        raise argparse.ArgumentTypeError(
            f"{value!r}: give one or more of {', '.join(FAIL_ON)}, comma-separated")
    return kinds


def _number(parse: Callable[[str], float], ok: Callable[[float], bool], wanted: str):
    """An argparse type: a number ``parse`` reads and ``ok`` accepts, else "give <wanted>"."""
    def check(value: str):
        try:
            n = parse(value)
        except ValueError:
            n = None
        if n is None or not ok(n):  # NaN is not ok either
            raise argparse.ArgumentTypeError(f"{value!r}: give {wanted}")
        return n
    return check


def _at_least(low: int):
    return _number(int, lambda n: n >= low, f"a whole number of {low} or more")


_port = _number(int, lambda n: 0 <= n <= 65535, "a port from 0 (any free one) to 65535")
_seconds = _number(float, lambda n: n >= 0, "seconds, 0 or more")


def _nonblank(value: str) -> str:
    """A name or reason the audit trail keeps: not empty."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty: the audit trail keeps it")
    return value.strip()


def _person(value: str) -> str:
    """A person's name the audit trail keeps (``--as``, ``--by``): not empty, one line (a line
    break or other control character would print as two entries in `fusionlake audit`)."""
    value = _nonblank(value)
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise argparse.ArgumentTypeError(f"{value!r}: a name has no line breaks or other "
                                         "control characters")
    return value


#: The kinds of entries in the audit trail (fusionlake.lake.audit.record's callers).
AUDIT_KINDS = ("sql", "decision", "acceptance")


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line and exit 2, like every other user error."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="info",
                        default=argparse.SUPPRESS,
                        help="progress lines (stage, counts, seconds) on stderr: --log-level info")
    common.add_argument("--log-level", dest="log_level", default=argparse.SUPPRESS,
                        choices=["debug", "info", "warning", "error"],
                        help="what goes to stderr (default: info for run, serve and land when "
                             "stderr is not a terminal, where no progress bar shows; else "
                             "warning); debug and info also raise Prefect's own logging")
    common.add_argument("--lake", default=argparse.SUPPRESS,
                        help="lake URI: a path or s3://bucket/prefix (default: $FUSIONLAKE_LAKE "
                             "or ./lakehouse)")
    parser = _Parser(
        prog="fusionlake", parents=[common],
        description="An open data lake for cross-agency intelligence fusion.")
    parser.add_argument("--version", action="version", version=f"fusionlake {_version()}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = {name: sub.add_parser(name, parents=[common], help=help_, description=help_)
         for name, (_fn, help_) in COMMANDS.items()}

    p["drop"].add_argument("--agency", required=True,
                           help="lower-case id of the agency that sent the files")
    p["drop"].add_argument("--feed", required=True,
                           help="lower-case id of the feed (see `fusionlake feeds`)")
    p["drop"].add_argument("files", nargs="+", metavar="FILE", help="the files to deliver")
    p["drops"].add_argument("--format", choices=["table", "json"], default="table",
                            help="output format (default: table)")
    p["feeds"].add_argument("--format", choices=["table", "json"], default="table",
                            help="output format (default: table)")
    actions = p["feeds"].add_subparsers(dest="action", metavar="ACTION")
    draft_help = ("draft a feed file from a sample of an agency's export (CSV/TSV, xlsx, JSON "
                  "Lines, Parquet), for a steward to review")
    draft = actions.add_parser("draft", parents=[common], help=draft_help,
                               description=draft_help)
    draft.add_argument("file", metavar="FILE", help="the sample file")
    draft.add_argument("--agency", required=True, help="lower-case id of the agency")
    draft.add_argument("--feed", required=True, help="lower-case id of the feed")
    draft.add_argument("--out", metavar="PATH",
                       help="file to write, or a folder to write <agency>/<feed>.yaml in "
                            "(default: stdout)")
    draft.add_argument("--no-check", action="store_true",
                       help="skip validating the sample with the drafted suite (GX)")
    p["generate"].add_argument("--people", type=int, required=True,
                               help="how many people the scenario has")
    p["generate"].add_argument("--seed", type=int, default=1,
                               help="random seed: the same seed gives the same files")
    p["generate"].add_argument("--out", required=True,
                               help="folder for <agency>/<feed>/ files and truth.csv")
    p["generate"].add_argument(
        "--follow-up", type=int, metavar="ROWS",
        help="instead of the first drops, write the scenario's next delivery: ROWS rows of "
             "mm_police/detainees from a later raid (about half re-detentions of people already "
             "in the scenario, half new people; case numbers MWD-2026-*), as "
             "OUT/mm_police/detainees/detainees-follow-up.jsonl, with its truth rows appended to "
             "OUT/truth.csv. Give the --people, --seed and --out of the drops it follows: the "
             "file lands beside them under a new name, the truth then covers both, and "
             "delivering the folder again lands only the new file (the others are recorded "
             "as already received)")
    p["run"].add_argument("--full", action="store_true",
                          help="resolve every record again, retraining the model, and rebuild "
                          "every mart (scheduled runs resolve new records incrementally)")
    p["run"].add_argument("--wait", type=_seconds, default=0.0,
                          help="seconds to wait for another run on the same lake to finish")
    p["run"].add_argument("--fail-on", type=_fail_on, default=[], metavar="KINDS",
                          help="exit 1 when this run had such drops: a comma-separated list of "
                               f"{', '.join(FAIL_ON)}")
    p["run"].add_argument("--format", choices=["markdown", "json"], default="markdown",
                          help="the run summary as markdown (default; plain when piped) or JSON")
    when = p["serve"].add_mutually_exclusive_group()  # one schedule: never one silently
    when.add_argument("--cron", default="*/15 * * * *",
                      help="schedule (default: every 15 minutes)")
    when.add_argument("--interval", type=float, default=None,
                      help="run every N seconds instead of the cron schedule")
    p["serve"].add_argument("--port", type=int, default=4200,
                            help="port of the local Prefect server started when "
                                 "PREFECT_API_URL is not set")
    p["sql"].add_argument("query", nargs="?", metavar="QUERY",
                          help="SQL text, or the name of a saved question of sql/queries "
                               "(e.g. losses_by_case; --list names them all)")
    p["sql"].add_argument("--file", metavar="FILE",
                          help="read the SQL from a file (e.g. sql/queries/NAME.sql), or from "
                               "stdin with -")
    p["sql"].add_argument("--audience", default="all",
                          help="whose mart: all (the task force) or an agency id")
    p["sql"].add_argument("--format", choices=["table", "csv", "json"], default="table",
                          help="table for people; csv and json always hold every row")
    p["sql"].add_argument("--max-rows", type=int, default=MAX_ROWS, metavar="N",
                          help=f"rows the table output shows (default {MAX_ROWS}, the first and "
                               "last halves; 0 shows all)")
    p["sql"].add_argument("--list", action="store_true",
                          help="list the mart's tables and views with their descriptions, and "
                               "the saved questions")
    p["mart-path"].add_argument("--audience", default="all",
                                help="whose mart: all (the task force) or an agency id")
    p["sql"].add_argument("--as", dest="as_", metavar="NAME", type=_person,
                          help="who asks, for the audit trail (default: the account the command "
                               "runs as, which the trail keeps beside it either way)")
    p["audit"].add_argument("--kind", choices=AUDIT_KINDS, help="only entries of this kind")
    p["audit"].add_argument("--limit", type=_at_least(1), default=50,
                            help="the newest N entries")
    p["audit"].add_argument("--format", choices=["table", "json"], default="table",
                            help="output format (default: table)")
    p["report"].add_argument("--format", choices=["table", "json"], default="table",
                             help="output format (default: table)")
    p["docs"].add_argument("--sync", metavar="DIR",
                           help="copy the site into DIR (for an S3 lake) and print its path")
    p["docs"].add_argument("--serve", metavar="PORT", type=_port,
                           help="serve the site on http://127.0.0.1:PORT until Ctrl-C "
                                "(0: a free port)")
    p["review"].add_argument("--limit", type=_at_least(1), default=20,
                             help="the N most informative pairs (default: 20)")
    p["review"].add_argument("--format", choices=["table", "json"], default="table",
                             help="output format (default: table, two columns per pair)")
    p["decide"].add_argument("record_a", metavar="RECORD_A", help="a record id (see `review`)")
    p["decide"].add_argument("record_b", metavar="RECORD_B", help="another record id")
    p["decisions"].add_argument("--record", metavar="RECORD_ID",
                                help="only the decisions on this record")
    p["decisions"].add_argument("--format", choices=["table", "json"], default="table",
                                help="output format (default: table)")
    verdict = p["decide"].add_mutually_exclusive_group(required=True)
    verdict.add_argument("--same", action="store_true", help="the two records are one person")
    verdict.add_argument("--different", action="store_true",
                         help="the two records are two people")
    verdict.add_argument("--undo", action="store_true",
                         help="withdraw the standing decision on the pair (recorded, "
                              "nothing deleted)")
    p["decide"].add_argument("--by", required=True, type=_person, help="who decides")
    p["decide"].add_argument("--why", required=True, type=_nonblank,
                             help="the reason, for the audit trail")
    for name in ("accept", "reject", "retry"):
        p[name].add_argument("drop", metavar="DROP",
                             help="the drop id, or the start of it or of its sha256")
    for name in ("accept", "reject"):
        p[name].add_argument("--by", required=True, type=_person, help="who decides")
        p[name].add_argument("--why", required=True, type=_nonblank,
                             help="the reason, for the audit trail")
    p["retry"].add_argument("--by", type=_person,
                            help="who sends it back (default: the login name); required for a "
                                 "drop a steward rejected for good")
    p["retry"].add_argument("--why", type=_nonblank,
                            help="the reason, for the audit trail (default: retry requested); "
                                 "required for a drop a steward rejected for good")
    p["evaluate"].add_argument("--truth", required=True, help="truth.csv of `generate`")
    p["evaluate"].add_argument("--format", choices=["table", "json"], default="table",
                               help="output format (default: table)")
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    """Progress lines (fusionlake.progress: one per finished stage, with counts and seconds) on
    stderr. A scheduled or piped run shows no progress bar, so it gets them by default."""
    chosen = getattr(args, "log_level", None)
    unattended = args.command in ("run", "serve", "land") and not sys.stderr.isatty()
    level = chosen or ("info" if unattended else "warning")
    if chosen in ("debug", "info"):  # asked for: Prefect's own lines too (before it is imported)
        os.environ["PREFECT_LOGGING_LEVEL"] = chosen.upper()
    logger = logging.getLogger("fusionlake")
    for old in list(logger.handlers):  # main() may run more than once in one process (tests)
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False


def _quiet_libraries() -> None:
    # Splink's EM notes (levels a small sample lacks) and GX's temp-folder notice are nothing a
    # person running the pipeline can act on; their errors still show.
    logging.getLogger("splink").setLevel(logging.ERROR)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


#: Integer settings read from the environment (Settings.from_env), with their least value.
_INT_VARIABLES = {"FUSIONLAKE_DROP_WORKERS": 1, "FUSIONLAKE_DROP_PROCESS_MIN_BYTES": 0,
                  "FUSIONLAKE_MART_RETENTION": 1, "FUSIONLAKE_RESOLUTION_RETENTION": 1,
                  "FUSIONLAKE_LEASE_SECONDS": 1, "FUSIONLAKE_FULL_EVERY": 1,
                  "FUSIONLAKE_DROP_SECONDS": 0}


def _check_environment() -> None:
    for name, least in _INT_VARIABLES.items():
        value = os.environ.get(name)
        if not value:
            continue
        try:
            ok = int(value) >= least
        except ValueError:
            ok = False
        if not ok:
            raise UserError(f"{name}={value!r} is not a whole number of at least {least}")
    share = os.environ.get("FUSIONLAKE_INCREMENTAL_MAX_SHARE")
    if share:
        try:
            ok = 0.0 <= float(share) <= 1.0
        except ValueError:
            ok = False
        if not ok:
            raise UserError(f"FUSIONLAKE_INCREMENTAL_MAX_SHARE={share!r} is not a share "
                            "between 0 and 1")


#: The commands that may make a new local lake (the others only read or amend one).
MAKE_A_LAKE = ("drop", "land", "run", "serve")


def _check_lake(lake: str, command: str) -> None:
    """A local lake may be created, but only in a folder that exists, and only by a command
    that puts something in it: a typo in --lake must not quietly start a new lake somewhere
    else, nor read as an empty lake ("no drops yet")."""
    if "://" in lake:
        return
    path = Path(lake).expanduser()
    if not path.exists() and not path.parent.is_dir():
        raise UserError(f"--lake {lake}: {path.parent} does not exist; create it first, or "
                        "check the path")
    if not path.exists() and command not in MAKE_A_LAKE:
        raise UserError(f"--lake {lake}: there is no lake there ({path} does not exist); check "
                        "the path, or make one with `fusionlake run`")


def _stacks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` prints every thread's stack to stderr, and the command goes on:
    what an operator (or a test whose run seems stuck) looks at before deciding to kill it."""
    import faulthandler

    with contextlib.suppress(AttributeError, OSError, ValueError):  # stderr without a file
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)


def main(argv: list[str] | None = None) -> int:
    if argv is None and threading.current_thread() is threading.main_thread():
        _stacks_on_sigusr1()  # the `fusionlake` command itself, not a caller's main([...])
    configure_offline()
    _quiet_libraries()
    args = build_parser().parse_args(argv)
    fn = COMMANDS[args.command][0]
    _configure_logging(args)
    try:
        _check_environment()
        settings = Settings.from_env(getattr(args, "lake", None))
        if fn not in (cmd_generate, cmd_feeds):  # the commands that use a lake
            _check_lake(settings.lake, args.command)
        if fn in (cmd_run, cmd_serve):  # where drops are staged, before any server starts
            settings.check_task_runner()
            settings.check_resolve_backend()
        if fn in (cmd_run, cmd_land):  # a lake that is a file, a missing bucket: one line,
            # before any Prefect server starts. A folder that holds nothing: one request, not
            # a listing of the ledger, which grows with every drop. (Not `serve`: a store down
            # when the service starts fails its runs, which retry.)
            open_store(settings.lake).list("nothing-here")
        code = fn(args, settings)
        sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except Exception as exc:
        if _is_user_error(exc):
            print(redact(f"fusionlake {args.command}: {exc}"), file=sys.stderr)
            return EXIT_USER_ERROR
        print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
        return 1


#: Exit status after the reader of stdout went away (``| head``): a process killed by SIGPIPE's.
EXIT_CLOSED_PIPE = 128 + 13


def _closed_pipe() -> int:
    """The reader of our output has gone (``fusionlake sql ... | head``): stop quietly.

    stdout is pointed at /dev/null so that Python's final flush of the unwritten rest cannot
    raise again at exit (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_CLOSED_PIPE


def _is_user_error(exc: Exception) -> bool:
    return isinstance(exc, UserError | SettingsError | DeliveryError | LakeError | LeaseHeld
                      | LeaseLost | MartError | StewardError | audit.AuditError)


if __name__ == "__main__":
    sys.exit(main())
