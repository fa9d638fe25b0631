"""The audit trail: who queried or decided what, kept in the lake, append-only.

Every entry is one small JSON object written once with a conditional write (the ledger's
``put_if_absent``), under ``audit/<kind>/<UTC time>-<writer id>.json`` (layout.audit_key), so
nothing rewrites or removes an entry and concurrent writers never collide. Kinds in use:

``sql``
    a ``fusionlake sql`` query: audience, query text, who, rows returned (or why refused)
``decision``
    a steward's same/different decision (``fusionlake decide``)
``acceptance``
    a held drop accepted or rejected by a steward (``fusionlake accept/reject``)

Callers write with :func:`record`; stewards read with :func:`entries` / :func:`frame`
(``fusionlake audit`` and the ``audit_log`` table of the all-agencies mart).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import uuid
from datetime import UTC, datetime

import polars as pl

from fusionlake.lake import layout
from fusionlake.lake.store import ObjectStore, side_by_side

_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

#: The columns of :func:`frame` (and of the marts' audit_log table).
AUDIT_SCHEMA: dict[str, pl.DataType] = {
    "at": pl.Datetime("us", "UTC"),
    "kind": pl.String(),
    "who": pl.String(),
    "audience": pl.String(),
    "summary": pl.String(),
    "rows": pl.Int64(),
    "detail": pl.String(),  # JSON: every field of the entry
}


class AuditError(Exception):
    """An audit entry that cannot be written; the message says why."""


def account() -> str:
    """The operating system account this process runs as (its effective user id's name): what
    the audit trail keeps beside ``who`` (a name given with ``--as``), since ``$USER`` and
    ``--as`` are whatever the caller says."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, OSError):  # an id with no passwd entry (a container's arbitrary uid)
        return f"uid {os.geteuid()}"


def record(store: ObjectStore, kind: str, **fields) -> dict:
    """Append one entry of ``kind`` with ``fields`` (JSON-serialisable); returns it as stored.

    ``who`` and ``audience`` are shown as columns when given; ``at`` (UTC), a writer id and
    the ``account`` the process runs as (:func:`account`) are added. Raises AuditError if the
    entry could not be created (it is never overwritten).
    """
    if not _KIND.match(kind):
        raise AuditError(f"audit kind {kind!r} must be a lower-case identifier")
    now = datetime.now(UTC)
    writer = uuid.uuid4().hex[:12]
    body = {**fields, "kind": kind, "at": now.isoformat(), "writer": writer,
            "account": account()}
    key = layout.audit_key(kind, now.strftime("%Y%m%dT%H%M%S%fZ"), writer)
    data = json.dumps(body, ensure_ascii=False, default=str, sort_keys=True).encode()
    if not store.put_if_absent(key, data):  # True for our own retried write as well
        raise AuditError(f"audit entry {key} exists with other content: not overwritten")
    return body


def entries(store: ObjectStore, kind: str | None = None) -> list[dict]:
    """Every entry (of one kind, when given), oldest first."""
    prefix = f"{layout.AUDIT}/{kind}" if kind else layout.AUDIT
    keys = [k for k in store.list(prefix) if k.endswith(".json")]
    # one object per entry, and every query an analyst runs is one: side by side on S3
    found = side_by_side(lambda key: json.loads(store.get(key)), keys)
    return sorted(found, key=lambda e: (e.get("at", ""), e.get("writer", "")))


def _summary(entry: dict) -> str:
    if entry["kind"] == "sql":
        return str(entry.get("query", ""))
    if entry["kind"] == "decision":
        return (f"{entry.get('record_id_l')} and {entry.get('record_id_r')} are "
                f"{entry.get('decision')}: {entry.get('reason', '')}")
    return ", ".join(f"{k}={v}" for k, v in sorted(entry.items())
                     if k not in ("kind", "at", "writer", "who", "audience"))


def frame(store: ObjectStore, kind: str | None = None) -> pl.DataFrame:
    """The entries as a frame (AUDIT_SCHEMA), oldest first."""
    rows = [{
        "at": e["at"], "kind": e["kind"], "who": e.get("who"), "audience": e.get("audience"),
        "summary": _summary(e), "rows": e.get("rows"),
        "detail": json.dumps(e, ensure_ascii=False, sort_keys=True),
    } for e in entries(store, kind)]
    if not rows:
        return pl.DataFrame(schema=AUDIT_SCHEMA)
    return pl.DataFrame(rows, schema_overrides={"rows": pl.Int64}).with_columns(
        pl.col("at").str.to_datetime(time_zone="UTC", time_unit="us")).select(list(AUDIT_SCHEMA))


__all__ = ["AUDIT_SCHEMA", "AuditError", "account", "entries", "frame", "record"]
