"""Data Docs for data stewards: a static site that renders with no network.

Validation pages are GX's own (ValidationResultsPageRenderer + DefaultJinjaPageView, the stock
Data Docs look); the index is a plain table of drops written here, because GX's index page
fills itself with JavaScript from a site store we do not keep. Every CDN link of the GX
templates is rewritten to a copy under ``static/`` in the site (expectations/assets.py); any
other external link (logos, newsletter) is removed, so nothing a steward opens reaches out.

Layout::

    index.html
    validations/<agency>.<feed>/<drop_id>.html
    static/vendor/...   static/fusionlake.css
"""

from __future__ import annotations

import html
import os
import re
import shutil
from collections.abc import Iterable
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

    loaded = ExpectationSuiteValidationResultSchema().load(_escaped_values(result))
    document = ValidationResultsPageRenderer().render(loaded)
    return DefaultJinjaPageView().render(document)


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


def build_data_docs(results: Iterable[tuple[str, dict]], out_dir: Path) -> Path:
    """Build the stewards' site from GX validation results; returns the index page.

    Args:
        results: (drop_id, GX validation result as a JSON dict: ValidationOutcome.gx_result_json)
            per drop; the result's meta carries the feed name.
        out_dir: folder to write the site into (created; existing pages are replaced).

    Returns:
        Path of ``index.html``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    have_vendor = _write_static(out_dir)
    rows = []
    for drop_id, result in results:
        meta = result.get("meta") or {}
        feed = str(meta.get("feed") or meta.get("expectation_suite_name") or "unknown")
        rel = f"validations/{_safe(feed.replace('/', '.'))}/{_safe(drop_id)}.html"
        page = out_dir / rel
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(_localise(_render_validation(result), "../../static/", have_vendor),
                        encoding="utf-8")
        passed, total = _stats(result)
        failed = [f"{r['expectation_config']['type']}"
                  f"({r['expectation_config'].get('kwargs', {}).get('column', '')})"
                  for r in result.get("results") or [] if not r.get("success")]
        rows.append((feed, drop_id, bool(result.get("success")), passed, total, failed, rel))
    index = out_dir / "index.html"
    index.write_text(_index_page(rows), encoding="utf-8")
    return index


def _index_page(rows: list) -> str:
    body = []
    for feed, drop_id, success, passed, total, failed, rel in sorted(rows):
        status = ('<span class="passed">passed</span>' if success
                  else '<span class="failed">failed</span>')
        body.append(
            f"<tr><td>{html.escape(feed)}</td><td><a href=\"{html.escape(rel)}\">"
            f"{html.escape(drop_id)}</a></td><td>{status}</td><td>{passed} of {total}</td>"
            f"<td>{html.escape(', '.join(failed)) or '-'}</td></tr>")
    return (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>fusionlake data docs</title>"
        "<link rel=\"stylesheet\" href=\"static/fusionlake.css\"></head><body>"
        "<h1>fusionlake: validation of agency drops</h1>"
        "<p>One row per validated drop; open a drop for every expectation and the values that "
        "failed it.</p><table><thead><tr><th>feed</th><th>drop</th><th>status</th>"
        "<th>expectations passed</th><th>failed expectations</th></tr></thead><tbody>"
        + "".join(body) + "</tbody></table></body></html>"
    )


__all__ = ["build_data_docs"]
