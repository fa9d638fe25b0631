"""Data Docs for data stewards: a static site that renders with no network.

Validation pages are GX's own (ValidationResultsPageRenderer + DefaultJinjaPageView, the stock
Data Docs look); the index is a plain table of drops written here, because GX's index page
fills itself with JavaScript from a site store we do not keep. Every CDN link of the GX
templates is rewritten to a copy under ``static/`` in the site (expectations/assets.py); any
other external link (logos, newsletter) is removed, so nothing a steward opens reaches out.

Pages are rendered one drop at a time: a drop whose page cannot be rendered (no GX result
because the drop was rejected before its suite ran, or a result GX cannot read) gets a page
saying what went wrong, and the other drops' pages and the index are built as usual.

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

    loaded = ExpectationSuiteValidationResultSchema().load(result)
    document = ValidationResultsPageRenderer().render(loaded)
    return DefaultJinjaPageView().render(document)


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


def build_data_docs(results: Iterable[tuple[str, dict]], out_dir: Path) -> Path:
    """Build the stewards' site from GX validation results; returns the index page.

    Args:
        results: (drop_id, GX validation result as a JSON dict: ValidationOutcome.gx_result_json)
            per drop; the result's meta carries the feed name.
        out_dir: folder to write the site into (created; existing pages are replaced).

    Returns:
        Path of ``index.html``. A drop whose page cannot be rendered gets a page saying why
        (and a row saying so in the index); it never stops the others.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    have_vendor = _write_static(out_dir)
    rows = []
    for drop_id, result in results:
        meta = (result.get("meta") if isinstance(result, dict) else None) or {}
        feed = str(meta.get("feed") or meta.get("expectation_suite_name") or "unknown")
        rel = f"validations/{_safe(feed.replace('/', '.'))}/{_safe(drop_id)}.html"
        page = out_dir / rel
        page.parent.mkdir(parents=True, exist_ok=True)
        what = None
        if not isinstance(result, dict) or not result.get("results"):
            what = ("no GX result was stored for it: it was rejected before its suite ran "
                    "(no data rows, or a declared column missing)")
        else:
            try:
                text = _localise(_render_validation(result), "../../static/", have_vendor)
                passed, total = _stats(result)
                failed = [f"{r['expectation_config']['type']}"
                          f"({r['expectation_config'].get('kwargs', {}).get('column', '')})"
                          for r in result["results"] if not r.get("success")]
            except Exception as exc:  # one drop's page never stops the site
                what = f"{type(exc).__name__}: {str(exc)[:500]}"
        if what is not None:
            text = _error_page(feed, drop_id, what)
            passed = total = 0
            failed = [f"page not rendered: {what}"]
        page.write_text(text, encoding="utf-8")
        success = isinstance(result, dict) and bool(result.get("success")) and total > 0
        rows.append((feed, drop_id, success, passed, total, failed, rel))
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
