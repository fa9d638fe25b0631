"""SQL text written by hand: one way to quote a value (the resolver's rules, the marts' steps)."""

from __future__ import annotations

from pathlib import Path


def sql_literal(value: str | Path) -> str:
    """A value as an SQL string literal, quotes doubled (a lake may live under /home/o'neil)."""
    return "'" + str(value).replace("'", "''") + "'"
