"""bench/bench_pipeline.py reads how a run resolved and published from its summary: "full"
unless the run says it worked incrementally, so the benchmark never credits what did not run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fusionlake.pipeline.summary import RunSummary

_spec = importlib.util.spec_from_file_location(
    "bench_pipeline", Path(__file__).resolve().parents[1] / "bench" / "bench_pipeline.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def summary(resolution_stats: dict | None = None, **extra) -> RunSummary:
    out = RunSummary(run_id="r", lake="/lake", marts={"all": "v1", "cn_mps": "v1"},
                     resolution_stats=resolution_stats or {"new cross-agency matches": 3})
    for name, value in extra.items():
        setattr(out, name, value)
    return out


def test_a_summary_that_says_nothing_is_a_full_run():
    assert bench.run_modes(summary()) == {"resolve": "full", "publish": "full"}


@pytest.mark.parametrize(("modes", "expected"), [
    ({"all+cn_mps": {"mode": "incremental", "why": "60 new records"}}, "incremental"),
    ({"all+cn_mps": {"mode": "full", "why": "asked for (--full)"}}, "full"),
    # one resolution per visibility group: each says how it ran
    ({"all+cn_mps": {"mode": "incremental", "why": "..."},
      "mm_police+th_imm": {"mode": "full", "why": "..."}}, "mixed (1 of 2 incremental)"),
])
def test_resolve_mode_from_the_resolution_statistics(modes, expected):
    assert bench.run_modes(summary({"resolve mode": modes}))["resolve"] == expected


@pytest.mark.parametrize(("builds", "expected"), [
    ({"all": "updated", "cn_mps": "copied"}, "incremental"),
    ({"all": "rebuilt", "cn_mps": "copied", "mm_police": "updated"},
     "mixed (1 of 2 incremental)"),
    ({"all": "rebuilt", "cn_mps": "copied"}, "full"),
])
def test_publish_mode_from_each_mart_s_build(builds, expected):
    builds = {a: {"mode": m, "why": "...", "seconds": 1.0} for a, m in builds.items()}
    assert bench.run_modes(summary(mart_builds=builds))["publish"] == expected


def test_verdicts_set_each_figure_beside_its_target():
    rows = [{"stage": "validate+stage", "seconds": 3.2, "peak": 100 * 2**20},
            {"stage": "resolve", "seconds": 4.0, "peak": 200 * 2**20},
            {"stage": "publish", "seconds": 1.0, "peak": 150 * 2**20},
            {"stage": "overall", "seconds": 9.0, "peak": 5000 * 2**20,
             "mode": {"resolve": "incremental", "publish": "full"}}]
    full = {v["stage"]: v for v in bench.verdicts(10, "full", rows, 2.0)}
    assert (full["overall"]["x_splink"], full["overall"]["target"], full["overall"]["met"]) == (
        4.5, 5.0, True)
    assert (full["validate+stage"]["met"], full["resolve"]["met"], full["publish"]["met"]) == (
        False, True, True)
    assert full["overall"]["peak_met"] is False and full["resolve"]["peak_met"] is None
    assert full["overall"]["mode"] == "resolve incremental, publish full"
    incremental = {v["stage"]: v for v in bench.verdicts(10, "incremental", rows, 2.0)}
    assert (incremental["overall"]["target"], incremental["overall"]["met"]) == (1.0, False)
    assert incremental["resolve"]["target"] is None and incremental["resolve"]["met"] is None


def test_stage_pairs_times_a_stage_of_both_checkouts_in_turn(tmp_path):
    """bench/bench_stage_pairs.py runs the stage in each checkout's own code, alternately, and
    prints every run, the medians and their ratio (here a checkout against itself)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    script = root / "bench" / "bench_stage_pairs.py"
    done = subprocess.run([sys.executable, str(script), "--people", "150", "--pairs", "2",
                           "--against", str(root)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = [line for line in done.stdout.splitlines() if line.lstrip("│ ").startswith(("1 ", "2 "))]
    assert len(runs) == 4  # two pairs of two runs
    assert "ratio" in done.stdout and "this / against" in done.stdout
    refused = subprocess.run([sys.executable, str(script), "--against", str(tmp_path)],
                             capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 2 and "must name a checkout of fusionlake" in refused.stderr


def test_template_bench_runs_a_drop_of_copies_in_each_checkout(tmp_path):
    """bench/bench_template.py writes N copies of one detainee row, runs the whole pipeline on
    them in each checkout's code and prints a row per run, or says why it did not run one."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    script = root / "bench" / "bench_template.py"
    spec = importlib.util.spec_from_file_location("bench_template", script)
    template = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(template)
    drops = template.write_drop(3, tmp_path / "drops")
    lines = (drops / "mm_police" / "detainees" / "template.jsonl").read_text().splitlines()
    assert len(lines) == 3 and len({json.loads(x)["case_no"] for x in lines}) == 3
    assert len({json.dumps({**json.loads(x), "case_no": None}) for x in lines}) == 1

    done = subprocess.run([sys.executable, str(script), "--copies", "40", "--copies", "60",
                           "--against", str(root), "--against-max", "50"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in done.stdout.splitlines() if line.lstrip("│ ").startswith(("40", "60"))]
    assert len(rows) == 4, done.stdout
    assert "FAILED" not in done.stdout
    assert "not run (more than --against-max=50)" in done.stdout


@pytest.mark.slow
def test_scale_bench_stages_shards_on_dask_and_reads_what_resolution_would(tmp_path):
    """bench/bench_scale.py at two shards of 300 people: each shard's five files delivered
    under names of their own, staged on a Dask LocalCluster in a flow run, and the records
    read for resolution are those of both shards (distinct keys: no shard supersedes the
    other's rows)."""
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "bench" / "bench_scale.py"), "--people",
                           "600", "--shard", "300", "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "FAILED" not in out, out
    assert out.count("generate shard") == 2
    staged = re.search(r"10 of 10 drops staged, ([\d,]+) rows", out)
    read = re.search(r"([\d,]+) records; the tables resolution reads", out)
    assert staged and read, out
    rows, records = (int(m.group(1).replace(",", "")) for m in (staged, read))
    # only the rows the generator planted twice (the same key within a drop) are superseded
    assert 0.97 * rows < records < rows
    names = sorted(p.name for p in (tmp_path / "work" / "drops").rglob("*.*"))
    assert len(names) == 10 and {n.rsplit("-", 1)[1].split(".")[0] for n in names} == {
        "s00", "s01"}


@pytest.mark.slow
def test_s3_reads_bench_reads_the_same_rows_both_ways_and_in_place_writes_no_local_copy(
        tmp_path):
    """bench/bench_s3_reads.py copies a lake's staged tables into moto and reads them
    downloaded and in place: the same rows each way, nothing written to disk in place."""
    import re
    import subprocess
    import sys

    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.run import run
    from fusionlake.synth import generate

    generate(200, 5, tmp_path / "gen")
    store = open_store(str(tmp_path / "lake"))
    for feed in sorted(p for p in (tmp_path / "gen").glob("*/*") if p.is_dir()):
        deliver(store, feed.parent.name, feed.name, sorted(feed.iterdir()))
    assert not run(Settings(lake=str(tmp_path / "lake"))).problems
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "bench" / "bench_s3_reads.py"), "--lake",
                           str(tmp_path / "lake"), "--runs", "1"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 8 and cells[1] in ("download", "in place"):
            rows[(cells[0], cells[1])] = cells
    assert len(rows) == 4, done.stdout
    for read in ("resolution's columns", "every column"):
        download, in_place = rows[(read, "download")], rows[(read, "in place")]
        assert download[7] == in_place[7] and int(download[7].replace(",", "")) > 200
        assert float(download[5]) > 0 and float(in_place[5]) == 0
        assert float(in_place[4]) > 0
    assert re.search(r"staged tables are [\d.]+ MiB", done.stdout)


def test_ledger_bench_prints_each_read_with_its_requests(tmp_path):
    """bench/bench_ledger.py at a size that runs in seconds: a read again of the ledger lists,
    and fetches nothing."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "bench" / "bench_ledger.py"), "--drops",
                           "12", "--runs", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {cells[1]: cells for line in done.stdout.splitlines()
            if line.startswith("| 12 |") and (cells := [c.strip() for c in line.split("|")[1:-1]])}
    assert list(rows) == ["in turn, every read", "first read", "read again"], done.stdout
    assert rows["in turn, every read"][3] == rows["first read"][3] == "26"  # 2 per drop, 2 lists
    assert int(rows["read again"][3]) <= 2


def test_steward_reads_bench_prints_both_ways_with_the_same_requests_and_rows(tmp_path):
    """bench/bench_steward_reads.py at a size that runs in seconds: the two ways make the same
    requests and read the same rows (4 drops of 12 validation rows, one quarantined row and a
    GX result each, and 6 audit entries)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "bench" / "bench_steward_reads.py"),
                           "--drops", "4", "--queries", "6", "--runs", "1"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {cells[0]: cells for line in done.stdout.splitlines()
            if line.startswith("| ") and (cells := [c.strip() for c in line.split("|")[1:-1]])
            and cells[0] in ("one by one", "side by side")}
    assert list(rows) == ["one by one", "side by side"], done.stdout
    # 4 drops x 3 objects and 6 entries, and the listings
    assert rows["one by one"][3] == rows["side by side"][3]
    assert int(rows["one by one"][3]) >= 4 * 3 + 6
    assert rows["one by one"][4] == rows["side by side"][4] == str(4 * 12 + 4 + 6 + 4)
