"""The marts' data dictionary: every table, view and column with its comment, and the saved
questions with their SQL.

The comments are written once, by the mart's own steps (``COMMENT ON`` in ``sql/mart``); this
module only reads them back from a mart (DuckDB's ``duckdb_tables()``, ``duckdb_views()``,
``duckdb_columns()``, ``duckdb_functions()``) and renders them for people:

* :func:`catalogue` and :func:`uncommented`: the relations of a mart, and what lacks a comment
  (the build refuses to publish a mart with any, see fusionlake.pipeline.marts.check_mart);
* :func:`render_html`: one static page (no script, no external asset, every value escaped),
  published at ``reports/dictionary/index.html`` beside the stewards' Data Docs.

The page describes the all-agencies mart; every audience's mart has the same tables and
columns (only their rows differ), so one page serves every analyst and holds no data.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

__all__ = ["Column", "Relation", "catalogue", "render_html", "uncommented"]


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    comment: str | None


@dataclass(frozen=True)
class Relation:
    """A table, view or table macro of a mart."""

    name: str
    kind: str  # table | view | macro
    comment: str | None
    columns: list[Column] = field(default_factory=list)
    sql: str | None = None  # a view's or macro's definition


# Internal and temporary objects are not the mart's: DuckDB's own catalog views, a build's
# temporary tables.
_TABLES = """
    SELECT table_name, comment FROM duckdb_tables()
    WHERE NOT temporary AND NOT internal AND database_name = current_database()
    ORDER BY table_name"""
_VIEWS = """
    SELECT view_name, comment, sql FROM duckdb_views()
    WHERE NOT temporary AND NOT internal AND database_name = current_database()
    ORDER BY view_name"""
_COLUMNS = """
    SELECT table_name, column_name, data_type, comment FROM duckdb_columns()
    WHERE NOT internal AND database_name = current_database()
    ORDER BY table_name, column_index"""
_MACROS = """
    SELECT DISTINCT function_name, comment, macro_definition FROM duckdb_functions()
    WHERE function_type = 'table_macro' AND NOT internal AND database_name = current_database()
    ORDER BY function_name"""


def catalogue(con: duckdb.DuckDBPyConnection) -> list[Relation]:
    """Every table, view and table macro of the mart, tables first, with columns and comments."""
    columns: dict[str, list[Column]] = {}
    for table, name, data_type, comment in con.execute(_COLUMNS).fetchall():
        columns.setdefault(table, []).append(Column(name, data_type, comment))
    out = [Relation(name, "table", comment, columns.get(name, []))
           for name, comment in con.execute(_TABLES).fetchall()]
    out += [Relation(name, "view", comment, columns.get(name, []), sql)
            for name, comment, sql in con.execute(_VIEWS).fetchall()]
    out += [Relation(name, "macro", comment, [], sql)
            for name, comment, sql in con.execute(_MACROS).fetchall()]
    return out


def uncommented(relations: Iterable[Relation]) -> list[str]:
    """``table``, ``view`` or ``table.column`` for everything without a comment."""
    missing = []
    for rel in relations:
        if not (rel.comment or "").strip():
            missing.append(f"{rel.kind} {rel.name}")
        missing += [f"column {rel.name}.{c.name}" for c in rel.columns
                    if not (c.comment or "").strip()]
    return missing


_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em;
       color: #1a1a1a; }
h1 { font-size: 1.6em; } h2 { margin-top: 2.2em; border-bottom: 1px solid #ccc; }
h3 { margin-top: 1.6em; font-family: ui-monospace, monospace; }
table { border-collapse: collapse; width: 100%; margin: .5em 0 1em; }
th, td { text-align: left; vertical-align: top; padding: .25em .6em;
         border-bottom: 1px solid #eee; }
td.name, td.type { font-family: ui-monospace, monospace; white-space: nowrap; }
pre { background: #f6f6f6; padding: .7em; overflow-x: auto; font-size: 13px; }
.kind { color: #666; font-weight: normal; font-size: .8em; }
nav a { margin-right: .8em; font-family: ui-monospace, monospace; }
"""


def _e(text) -> str:
    return html.escape("" if text is None else str(text), quote=True)


def render_html(relations: list[Relation], questions: Iterable, *, built_at: datetime | None,
                title: str = "fusionlake mart: data dictionary") -> str:
    """One self-contained HTML page: the mart's tables, views and macros (each column with its
    type and comment) and the saved questions (``name``, ``question``, ``sql`` attributes) with
    their SQL. Every value is escaped; the page loads nothing from anywhere."""
    questions = list(questions)
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        "<p>Every table, view and column of the DuckDB marts, as the comments in the mart "
        "describe them (<code>DESCRIBE</code> and <code>duckdb_columns()</code> show the same "
        "text), and the analysts' saved questions. Open a mart with "
        "<code>duckdb \"$(fusionlake mart-path)\"</code>, list this from the command line with "
        "<code>fusionlake sql --list</code>, ask a saved question with "
        "<code>fusionlake sql NAME</code>.</p>",
    ]
    if built_at is not None:
        out.append(f"<p>From the all-agencies mart built at {_e(built_at.isoformat())}. "
                   "Every audience's mart has these tables and columns.</p>")
    out.append("<nav>" + "".join(f'<a href="#{_e(r.kind)}-{_e(r.name)}">{_e(r.name)}</a>'
                                 for r in relations)
               + '<a href="#questions">saved questions</a></nav>')
    for label, kind in (("Tables", "table"), ("Views", "view"), ("Table macros", "macro")):
        chosen = [r for r in relations if r.kind == kind]
        if not chosen:
            continue
        out.append(f"<h2>{label}</h2>")
        for rel in chosen:
            out.append(f'<h3 id="{_e(kind)}-{_e(rel.name)}">{_e(rel.name)} '
                       f'<span class="kind">{_e(kind)}</span></h3>')
            out.append(f"<p>{_e(rel.comment)}</p>")
            if rel.columns:
                out.append("<table><thead><tr><th>column</th><th>type</th><th>meaning</th>"
                           "</tr></thead><tbody>")
                out += [f'<tr><td class="name">{_e(c.name)}</td><td class="type">'
                        f"{_e(c.data_type)}</td><td>{_e(c.comment)}</td></tr>"
                        for c in rel.columns]
                out.append("</tbody></table>")
            if rel.sql and kind == "macro":
                out.append(f"<pre>{_e(rel.sql)}</pre>")
    out.append('<h2 id="questions">Saved questions</h2>')
    out.append("<p>In <code>sql/queries/</code>; run one with <code>fusionlake sql NAME</code>."
               "</p>")
    for q in questions:
        out.append(f'<h3 id="q-{_e(q.name)}">{_e(q.name)}</h3><p>{_e(q.question)}</p>'
                   f"<pre>{_e(q.sql.strip())}</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
