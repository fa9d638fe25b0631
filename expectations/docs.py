"""Data Docs for data stewards: a static site that renders with no network.

Validation pages are GX's own (ValidationResultsPageRenderer + DefaultJinjaPageView, the stock
Data Docs look); the index is a plain table of drops written here, because GX's index page
fills itself with JavaScript from a site store we do not keep. Every CDN link of the GX
templates is rewritten to a copy under ``static/`` in the site (expectations/assets.py); any
other external link (logos, newsletter) is removed, so nothing a steward opens reaches out.

Pages are rendered one drop at a time: a drop whose page cannot be rendered (no GX result
because the drop was rejected before its suite ran, or a result GX cannot read) gets a page
saying what went wrong, and the other drops' pages and the index are built as usual.

A site is built incrementally: ``previous`` names the drops whose pages an earlier build wrote
(and that have not changed since); only the other drops' pages are rendered, the index lists
them all, and ``rendered.json`` records every drop's pages for the next build.

Layout::

    rendered.json                                every drop's pages (for the next build)
    index.html                                   one row per drop, with its counts
    validations/<agency>.<feed>/<drop_id>.html   GX's page of one drop's expectations
    quarantine/<agency>.<feed>/<drop_id>.html    the rows kept out: line, column, value, reason
    static/vendor/...   static/fusionlake.css
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from expectations.assets import ASSETS, VENDOR, installed

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

#: Used when the vendor assets are not installed, and for the index page.
_MINIMAL_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #ccc; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
.failed, .text-danger { color: #b00020; font-weight: bold; }
.passed, .text-success { color: #1b5e20; }
"""

_URL_ATTR = re.compile(r"""(?P<attr>\b(?:src|href)\s*=\s*)(?P<q>["'])(?P<url>https?://[^"']*)(?P=q)""",
                       re.IGNORECASE)
_TAG_WITH_URL = re.compile(r"<(?:script|link)\b[^>]*https?://[^>]*>(?:\s*</script>)?",
                           re.IGNORECASE)
_FAVICON = re.compile(r'<link rel="shortcut icon" href="#"[^>]*>')
_GX_INDEX = re.compile(r'href="(?:\.\./)+index\.html"')
_GX_RELATIVE = re.compile(r'(?P<attr>\b(?:src|href)=)"(?:\.\./)+'
                          r'(?!\.\./|static/vendor|static/fusionlake|index\.html)[^"]*"')
_CSS_URL = re.compile(r"url\(\s*['\"]?https?://[^)]*\)", re.IGNORECASE)


def _localise(page: str, static_prefix: str, have_vendor: bool) -> str:
    """Point CDN links at the site's own copies; drop every other external URL."""

    def replace(match: re.Match) -> str:
        url = match.group("url")
        for asset in ASSETS:
            if url.startswith(asset.url_prefix) and have_vendor:
                return f'{match.group("attr")}"{static_prefix}vendor/{asset.local}"'
        if url.endswith(".css") or ".css?" in url:
            return f'{match.group("attr")}"{static_prefix}fusionlake.css"'
        # images and plain links to the outside world: no target at all
        return f'{match.group("attr")}"#"'

    page = _URL_ATTR.sub(replace, page)
    page = _TAG_WITH_URL.sub("", page)  # anything left (no vendor copy): drop the tag
    page = _CSS_URL.sub("none", page)
    # GX links into its own site layout (index, suite pages, favicon), which this site has not:
    # the index becomes ours, the rest go nowhere.
    page = _GX_INDEX.sub(f'href="{static_prefix[:-len("static/")]}index.html"', page)
    return _GX_RELATIVE.sub(r'\g<attr>"#"', page)


def _render_validation(result: dict) -> str:
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    import expectations.custom  # noqa: F401 - the custom expectations must be registered

    loaded = ExpectationSuiteValidationResultSchema().load(_escaped_values(_named(result)))
    document = ValidationResultsPageRenderer().render(loaded)
    return DefaultJinjaPageView().render(document)


def _named(result: dict) -> dict:
    """The result with what GX's page shows filled in from our own meta.

    GX prints ``__none__`` for a run without a name and "Data asset: None" without batch
    kwargs: the drop id and the drop's file say what the page is about. A column-map result
    gets its real unexpected count as its observed value: the stored value lists are a sample.
    """
    out = dict(result)
    meta = dict(out.get("meta") or {})
    run_id = dict(meta.get("run_id") or {}) if isinstance(meta.get("run_id"), dict) else {}
    run_id["run_name"] = run_id.get("run_name") or meta.get("drop_id") or "drop"
    meta["run_id"] = run_id
    asset = meta.get("file") or meta.get("feed") or meta.get("drop_id")
    meta["batch_kwargs"] = {"data_asset_name": asset}
    meta.pop("batch_spec", None)
    out["meta"] = meta
    results = []
    for r in out.get("results") or []:
        res = dict(r.get("result") or {})
        count, total = res.get("unexpected_count"), res.get("element_count")
        if isinstance(count, int) and isinstance(total, int) and "observed_value" not in res:
            pct = res.get("unexpected_percent") or 0.0
            res["observed_value"] = (f"{count:,} unexpected of {total:,} rows ({pct:.3g}%)"
                                     if count else "0 unexpected")
        results.append({**r, "result": res})
    out["results"] = results
    return out


#: GX's sample table counts each value within the stored sample (at most 20 values), which
#: reads as the value's count: it is labelled as a sample, the real count is the observed value.
_SAMPLE_HEADER = re.compile(r"(<th[^>]*>\s*)Sampled Unexpected Values(\s*</th>\s*<th[^>]*>\s*)"
                            r"Count(\s*</th>)")
_LOGO = re.compile(r"<a[^>]*>\s*<img[^>]*alt=\"Great Expectations\"[^>]*>\s*</a>", re.DOTALL)
_FOOTER = re.compile(r"<footer>.*?</footer>", re.DOTALL)
_SUITE_LINK = re.compile(r'<a href="#" >([^<]*)</a>')
_WALKTHROUGH = re.compile(r"<script>\s*try \{\s*if \(localStorage.getItem\('ge-walkthrough.*?"
                          r"</script>", re.DOTALL)


def _tidy(page: str) -> str:
    """Take out what points nowhere in our site: GX's logo, newsletter footer, suite link."""
    page = _SAMPLE_HEADER.sub(r"\1Sample of the unexpected values\2Count in the sample\3", page)
    page = _LOGO.sub("", page)
    page = _FOOTER.sub("", page)
    page = _FAVICON.sub("", page)
    page = _WALKTHROUGH.sub("", page)
    # the suite's own page is not published: its name stays, as text
    return _SUITE_LINK.sub(r"<span>\1</span>", page)


def _escape_strings(value):
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, list):
        return [_escape_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape_strings(v) for k, v in value.items()}
    return value


def _escaped_values(result: dict) -> dict:
    """The result with every value that came from the drop HTML-escaped.

    GX's page templates insert unexpected values and sample rows as they are, so a cell holding
    ``<script>`` would run in the steward's browser. The values of a drop sit under each
    expectation result's ``result`` (unexpected lists and counts) and ``exception_info``.
    """
    out = dict(result)
    out["results"] = [
        {**r, **{k: _escape_strings(r[k]) for k in ("result", "exception_info") if k in r}}
        for r in result.get("results") or []
    ]
    return out


def _write_static(out_dir: Path) -> bool:
    static = out_dir / "static"
    static.mkdir(parents=True, exist_ok=True)
    (static / "fusionlake.css").write_text(_MINIMAL_CSS, encoding="utf-8")
    if installed():
        shutil.copytree(VENDOR, static / "vendor", dirs_exist_ok=True)
        return True
    return False


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "_"


def _stats(result: dict) -> tuple[int, int]:
    rows = result.get("results") or []
    return sum(1 for r in rows if r.get("success")), len(rows)


def _error_page(feed: str, drop_id: str, what: str) -> str:
    """The page of a drop whose GX page could not be rendered: what went wrong, and where the
    drop's results are anyway."""
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(feed)} {html.escape(drop_id)}</title>"
        "<link rel=\"stylesheet\" href=\"../../static/fusionlake.css\"></head><body>"
        f"<p><a href=\"../../index.html\">all drops</a></p>"
        f"<h1>{html.escape(feed)}: drop {html.escape(drop_id)}</h1>"
        f"<p class=\"failed\">This drop's validation page could not be rendered: "
        f"{html.escape(what)}</p>"
        "<p>Its state and reason are in the drop ledger (<code>fusionlake drops</code>), its "
        "expectation results in <code>fusionlake report</code> and the mart's "
        "<code>validation_result</code> table.</p></body></html>")


#: The site's record of the pages each drop has (page, quarantine page, why not rendered).
RENDERED = "rendered.json"
#: The index's rows as last written, for :func:`index_page` to write it again with new states.
INDEX_ROWS = "index.json"


def index_page(drops: list[dict], record: Mapping[str, dict]) -> str:
    """The index page of ``drops`` (rows as :func:`build_data_docs` takes them) over the pages
    a site has, by its ``rendered.json`` ``record``: for a site whose drops changed state
    (published) after it was built, without rendering any drop's page again."""
    return _index_page(drops, {d: e["page"] for d, e in record.items() if e.get("page")},
                       {d: e["quarantine"] for d, e in record.items() if e.get("quarantine")},
                       {d: e["broken"] for d, e in record.items() if e.get("broken")})


def build_data_docs(results: Iterable[tuple[str, dict]], out_dir: Path,
                    drops: Iterable[dict] | None = None,
                    quarantine: Mapping[str, Sequence[dict]] | None = None,
                    previous: Mapping[str, dict] | None = None) -> Path:
    """Build the stewards' site from GX validation results; returns the index page.

    Args:
        results: (drop_id, GX validation result as a JSON dict: ValidationOutcome.gx_result_json)
            per drop; the result's meta carries the feed name.
        out_dir: folder to write the site into (created; existing pages are replaced).
        drops: one dict per drop for the index (fusionlake.pipeline.report.DropReport.as_json:
            file, received, state, rows, staged, flagged, quarantined, held, findings), drops
            that never reached GX included; without it the index lists the validated drops.
        quarantine: drop_id -> its quarantined rows (line, column, value, reason), each drop
            with rows gets a page ``quarantine/<agency>.<feed>/<drop_id>.html``.
        previous: drop_id -> its entry in the ``rendered.json`` of an earlier build of this
            site, for drops whose pages are already there and are not rendered again; the
            static assets are written only when there is no earlier build.

    Returns:
        Path of ``index.html``. A drop whose page cannot be rendered gets a page saying why
        (and a row saying so in the index); it never stops the others.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = dict(previous or {})
    have_vendor = _write_static(out_dir) if not previous else bool(
        next(iter(previous.values())).get("vendor", installed()))
    drops = list(drops) if drops is not None else None
    by_id = {d["drop_id"]: d for d in drops or []}
    # what earlier builds rendered; this build's pages replace their entries
    pages = {d: e["page"] for d, e in previous.items() if e.get("page")}
    broken = {d: e["broken"] for d, e in previous.items() if e.get("broken")}
    fallback = []
    for drop_id, result in results:
        meta = (result.get("meta") if isinstance(result, dict) else None) or {}
        feed = str(meta.get("feed") or meta.get("expectation_suite_name") or "unknown")
        known = by_id.get(drop_id)
        if known:  # the page names the drop's file, not only its feed
            result = {**result, "meta": {**meta, "file": f"{feed}/{known['file']}"}}
        rel = f"validations/{_safe(feed.replace('/', '.'))}/{_safe(drop_id)}.html"
        page = out_dir / rel
        page.parent.mkdir(parents=True, exist_ok=True)
        what = None
        if not isinstance(result, dict) or not result.get("results"):
            what = ("no GX result was stored for it: it was rejected before its suite ran "
                    "(no data rows, or a declared column missing)")
        else:
            try:
                text = _tidy(_localise(_render_validation(result), "../../static/",
                                       have_vendor))
                row = _drop_from_result(drop_id, feed, result)
            except Exception as exc:  # one drop's page never stops the site
                what = f"{type(exc).__name__}: {str(exc)[:500]}"
        broken.pop(drop_id, None)
        if what is not None:
            broken[drop_id] = what
            text = _error_page(feed, drop_id, what)
            agency, _, name = feed.partition("/")
            row = {"drop_id": drop_id, "agency": agency, "feed": name, "file": "",
                   "received": "", "state": "page not rendered", "reason": what, "rows": None,
                   "staged": None, "flagged": None, "quarantined": None, "held": False,
                   "expectations": 0, "passed": 0, "findings": []}
        page.write_text(text, encoding="utf-8")
        pages[drop_id] = rel
        fallback.append(row)
    quarantine_pages = {d: e["quarantine"] for d, e in previous.items() if e.get("quarantine")}
    for drop in drops or fallback:
        rows = (quarantine or {}).get(drop["drop_id"])
        if rows:
            rel = (f"quarantine/{_safe(drop['agency'] + '.' + drop['feed'])}/"
                   f"{_safe(drop['drop_id'])}.html")
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (out_dir / rel).write_text(_quarantine_page(drop, rows), encoding="utf-8")
            quarantine_pages[drop["drop_id"]] = rel
    index = out_dir / "index.html"
    rows = drops if drops is not None else fallback
    index.write_text(_index_page(rows, pages, quarantine_pages, broken), encoding="utf-8")
    (out_dir / INDEX_ROWS).write_text(json.dumps(rows, ensure_ascii=False, default=str),
                                      encoding="utf-8")
    listed = {d["drop_id"] for d in (drops if drops is not None else fallback)} | set(pages)
    (out_dir / RENDERED).write_text(json.dumps({d: {
        "page": pages.get(d), "quarantine": quarantine_pages.get(d), "broken": broken.get(d),
        "vendor": have_vendor} for d in sorted(listed)}, indent=0), encoding="utf-8")
    return index


def _drop_from_result(drop_id: str, feed: str, result: dict) -> dict:
    """An index row from the GX result alone (no ledger at hand)."""
    agency, _, name = feed.partition("/")
    findings = []
    for r in result.get("results") or []:
        res = r.get("result") or {}
        count = res.get("unexpected_count")
        if not r.get("success") or count:
            cfg = r["expectation_config"]
            findings.append({"expectation": cfg["type"], "check": None,
                             "column": (cfg.get("kwargs") or {}).get("column"),
                             "success": bool(r.get("success")), "unexpected_count": count})
    passed, total = _stats(result)
    counts = [(r.get("result") or {}).get("element_count") for r in result.get("results") or []]
    counts = [c for c in counts if isinstance(c, int)]
    return {"drop_id": drop_id, "agency": agency, "feed": name, "file": "", "received": "",
            "state": "passed" if result.get("success") else "failed", "reason": None,
            "rows": max(counts) if counts else None, "staged": None, "flagged": None,
            "quarantined": None, "held": False, "expectations": total, "passed": passed,
            "findings": findings}


def _n(value) -> str:
    return "-" if value is None else f"{value:,}"


def _finding(f: dict) -> str:
    """One check as HTML: its short name (the full GX name on hover), column and real count."""
    mark = '<span class="failed">FAILED</span> ' if not f["success"] else ""
    name = f.get("check") or f["expectation"]
    head = f'{mark}<span title="{html.escape(f["expectation"])}">{html.escape(name)}</span>'
    text = f.get("text")  # the report's line: the count, what it is of, what became of the rows
    if text:
        return head + html.escape(text.removeprefix("FAILED ").removeprefix(name))
    return head + f"({html.escape(f.get('column') or '')}): {_n(f.get('unexpected_count'))} rows"



_PAGE_HEAD = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title>"
              "<link rel=\"stylesheet\" href=\"{static}fusionlake.css\"></head><body>")


def _index_page(drops: list[dict], pages: dict[str, str], quarantine_pages: dict[str, str],
                broken: dict[str, str] | None = None) -> str:
    body = []
    for d in sorted(drops, key=lambda d: (d.get("received") or "", d["drop_id"])):
        e = html.escape
        did = d["drop_id"]
        drop_cell = (f'<a href="{e(pages[did])}">{e(did)}</a>' if did in pages else e(did))
        q = d.get("quarantined")
        q_cell = (f'<a class="quarantine" href="{e(quarantine_pages[did])}">{_n(q)}</a>'
                  if did in quarantine_pages else _n(q))
        state = str(d.get("state") or "")
        state_cls = {"rejected": "failed", "held": "failed", "failed": "failed"}.get(state,
                                                                                       "passed")
        if d.get("expectations") is None:
            checks, found = "-", e(d.get("reason") or "not validated yet")
        else:
            checks = f"{d['passed']} of {d['expectations']}"
            found = "<br>".join(_finding(f) for f in sorted(
                d.get("findings") or [], key=lambda f: f["success"])) or "no bad values"
        if did in (broken or {}):  # its own page says why; the row must not look fine
            found = f'<span class="failed">page not rendered: {e(broken[did])}</span><br>{found}'
        body.append(
            f'<tr data-drop="{e(did)}"><td>{e(d["agency"] + "/" + d["feed"])}</td>'
            f"<td>{drop_cell}</td><td>{e(d.get('file') or '')}</td>"
            f"<td>{e(d.get('received') or '')}</td>"
            f'<td><span class="{state_cls}">{e(state)}</span></td>'
            f'<td class="rows">{_n(d.get("rows"))}</td>'
            f'<td class="staged">{_n(d.get("staged"))}</td>'
            f'<td class="flagged">{_n(d.get("flagged"))}</td>'
            f'<td class="quarantined">{q_cell}</td>'
            f"<td>{'yes' if d.get('held') else ''}</td><td>{checks}</td><td>{found}</td></tr>")
    return (
        _PAGE_HEAD.format(title="fusionlake data docs", static="static/")
        + "<h1>fusionlake: validation of agency drops</h1>"
        "<p>One row per drop, rejected ones included. <b>flagged</b>: rows staged with a value "
        "kept but not normalised; <b>quarantined</b>: rows kept out, open the count for the rows "
        "with their line, column, value and reason; the last column lists every check that "
        "failed or found bad values within its <code>mostly</code>, with the real number of "
        "rows. Open a drop for every expectation.</p>"
        "<table><thead><tr><th>feed</th><th>drop</th><th>file</th><th>received (UTC)</th>"
        "<th>state</th><th>rows</th><th>staged</th><th>flagged</th><th>quarantined</th>"
        "<th>held</th><th>checks passed</th><th>checks that found bad values</th></tr></thead>"
        "<tbody>" + "".join(body) + "</tbody></table></body></html>"
    )


#: rows shown on a quarantine page; the rest stay in the lake, the page says how many
QUARANTINE_PAGE_ROWS = 5000


def _quarantine_page(drop: dict, rows: Sequence[dict]) -> str:
    e = html.escape
    shown = rows[:QUARANTINE_PAGE_ROWS]
    body = "".join(
        f"<tr><td>{'' if r.get('line') is None else r['line']}</td>"
        f"<td>{e(str(r.get('column') or ''))}</td>"
        f"<td><code>{e('' if r.get('value') is None else str(r['value']))}</code></td>"
        f"<td>{e(str(r.get('reason') or ''))}</td></tr>" for r in shown)
    more = (f"<p>The first {len(shown):,} of {len(rows):,} quarantined rows; all of them are "
            f"in the lake under quarantine/{e(drop['agency'])}/{e(drop['feed'])}/"
            f"{e(drop['drop_id'])}/.</p>" if len(rows) > len(shown) else "")
    title = f"quarantine of {drop['agency']}/{drop['feed']}/{drop.get('file') or ''}"
    return (
        _PAGE_HEAD.format(title=e(title), static="../../static/")
        + f'<p><a href="../../index.html">all drops</a></p><h1>{e(title)}</h1>'
        f"<p>Drop {e(drop['drop_id'])}: {len(rows):,} quarantined rows (a row may appear once "
        "per check it failed). Line is the line in the file as delivered (1 = the header of a "
        "CSV).</p>" + more +
        "<table><thead><tr><th>line</th><th>column</th><th>value</th><th>reason</th></tr>"
        "</thead><tbody>" + body + "</tbody></table></body></html>"
    )


__all__ = ["build_data_docs"]
