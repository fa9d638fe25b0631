"""Benchmark: one template row sent N times, through a whole run; seconds and peak memory.

    .venv/bin/python bench/bench_template.py --copies 500 --copies 1500 --copies 8692
    .venv/bin/python bench/bench_template.py --copies 500 --copies 1500 --against ../previous
    .venv/bin/python bench/bench_template.py --copies 700 --templates 10

The hostile drop of transforms/resolution/blocks.py: N Myanmar police detainee rows that
differ only by case number (one name, birth date, sex, nationality and phone). Every blocking
rule they fill pairs all the copies, so without a limit on blocks the resolution holds N^2 / 2
scored pairs, all of them matches. For each N, a fresh child process of each checkout (this
one, and ``--against``, another checkout such as a git worktree of an earlier commit) delivers
the drop to a new local lake and runs the whole pipeline (bench/bench_pipeline.py's child:
fusionlake.pipeline.run, the flow's code); the table gives its stage seconds and the peak
resident size of the run's process tree. ``--against-max`` keeps the other checkout away from
copy counts it cannot survive (before the limit, 8,692 copies were killed at 24 GB).
``--templates K`` sends K such rows (other names and birth dates), each N times: K blocks
just under the limit. Each is compared until the copies' pairs reach ``identical_budget``,
and the largest groups beyond it are left out (blocks.copied_blocks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW_MARK = "@stage "  # as bench_pipeline's children print their stages
TEMPLATE = {"name": "Aung Aung", "sex": "M", "date_of_birth": "1990-01-02",
            "nationality": "Myanmar", "nrc": None, "passport_no": None, "phone": "09420012345",
            "compound": "KK Park", "township": "Myawaddy", "detained_on": "2025-01-05"}


NAMES = ("Aung Aung", "Kyaw Kyaw", "Zaw Min", "Thant Zin", "Min Htet", "Ye Lin", "Soe Moe",
         "Htet Aung", "Naing Win", "Ko Ko")


def write_drop(copies: int, out: Path, templates: int = 1) -> Path:
    """A drops folder (agency/feed/file) holding one file of ``copies`` rows of each of
    ``templates`` template rows (the first is :data:`TEMPLATE`)."""
    folder = out / "mm_police" / "detainees"
    folder.mkdir(parents=True)
    with open(folder / "template.jsonl", "w", encoding="utf-8") as f:
        for t in range(templates):
            row = {**TEMPLATE, "name": NAMES[t % len(NAMES)],
                   "date_of_birth": f"{1990 + t // len(NAMES)}-01-{2 + t % 27:02d}"}
            for i in range(copies):
                f.write(json.dumps({"case_no": f"MP-T-{t:03d}-{i:06d}", **row}) + "\n")
    return out


def one_run(checkout: Path, drops: Path) -> list[dict]:
    """bench_pipeline's child of ``checkout`` on a fresh lake: its stage rows."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    with tempfile.TemporaryDirectory(prefix="fusionlake-template-") as tmp:
        done = subprocess.run(
            [sys.executable, str(checkout / "bench" / "bench_pipeline.py"), "--child",
             str(drops), str(Path(tmp) / "lake")],
            capture_output=True, text=True, cwd=checkout, env=env)
    rows = [json.loads(line.removeprefix(ROW_MARK)) for line in done.stdout.splitlines()
            if line.startswith(ROW_MARK)]
    if done.returncode != 0:
        rows.append({"stage": "overall", "seconds": float("nan"), "peak": 0,
                     "note": f"FAILED (exit {done.returncode}): {done.stderr[-300:]}"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, action="append",
                        help="rows of the template drop (repeatable; default 500, 1500, 8692)")
    parser.add_argument("--templates", type=int, default=1,
                        help="distinct template rows, each sent --copies times (default 1)")
    parser.add_argument("--against", type=Path, help="another checkout to run beside this one")
    parser.add_argument("--against-max", type=int, default=2000,
                        help="run --against only up to this many copies (default 2000)")
    args = parser.parse_args()
    if args.against is not None and not (args.against / "fusionlake").is_dir():
        parser.error("--against must name a checkout of fusionlake (a folder with fusionlake/)")

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.templates} template row(s) sent N times each: a whole run on a "
                        "fresh local lake")
    for col in ("copies", "code", "resolve s", "publish s", "overall s", "peak MiB", "note"):
        table.add_column(col, justify="left" if col in ("code", "note") else "right")
    codes = {"this": ROOT}
    if args.against is not None:
        codes["against"] = args.against.resolve()
    for copies in args.copies or [500, 1500, 8692]:
        with tempfile.TemporaryDirectory(prefix="fusionlake-template-drops-") as tmp:
            drops = write_drop(copies, Path(tmp) / "drops", args.templates)
            for name, checkout in codes.items():
                if name == "against" and copies > args.against_max:
                    table.add_row(f"{copies:,}", name, "", "", "", "",
                                  f"not run (more than --against-max={args.against_max:,})")
                    continue
                rows = {r["stage"]: r for r in one_run(checkout, drops)}
                overall = rows.get("overall", {"seconds": float("nan"), "peak": 0})
                table.add_row(
                    f"{copies:,}", name,
                    *(f"{rows[s]['seconds']:.1f}" if s in rows else "-"
                      for s in ("resolve", "publish")),
                    f"{overall['seconds']:.1f}", f"{overall['peak'] / 2**20:,.0f}",
                    overall.get("note", "")[:90])
    Console(width=170).print(table)


if __name__ == "__main__":
    main()
