"""Faults and crashes: storage errors are retried where they happen, bad drops stop nothing.

The S3 tests run through tests/faultproxy.py in front of the moto server: 503 SlowDown, 500
InternalError, and connections dropped before or after the endpoint acted, at a seeded rate.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import polars as pl
import pytest
from conftest import s3_client
from faultproxy import FAULTS
from polars.testing import assert_frame_equal

from fusionlake.lake.store import LakeError, S3Store, TransientLakeError, is_transient, redact


def _store(proxy, bucket: str, **kwargs) -> S3Store:
    return S3Store(bucket, "lake", client=s3_client(proxy.url), **kwargs)


@pytest.mark.slow  # SlowDown backs off for about a second per retry, as it should
def test_every_operation_survives_30_percent_faults(fault_proxy, s3_bucket, tmp_path):
    store = _store(fault_proxy, s3_bucket)
    fault_proxy.rate = 0.3
    for i in range(24):
        store.put(f"p/{i:03d}", f"v{i}".encode())
    assert store.list("p") == [f"p/{i:03d}" for i in range(24)]
    assert [store.get(f"p/{i:03d}") for i in range(24)] == [f"v{i}".encode() for i in range(24)]
    assert all(store.put_if_absent(f"c/{i}", b"run-1 wrote this") for i in range(20))
    assert not any(store.put_if_absent(f"c/{i}", b"run-2 wrote this") for i in range(20))
    src = tmp_path / "f.bin"
    src.write_bytes(bytes(range(256)) * 4096)
    store.upload_file("big/f.bin", src)
    store.download_file("big/f.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    for i in range(24):
        store.delete(f"p/{i:03d}")
    assert store.list("p") == []
    # each kind of fault was met, and every one was retried away
    assert {"slowdown", "internal", "drop-before", "drop-after"} <= set(fault_proxy.counts)


def test_conditional_write_whose_answer_was_lost_is_ours(fault_proxy, s3_bucket):
    # The retry trap: S3 creates the object, the answer is lost, botocore retries and meets
    # 412. Reading the object back tells our write from someone else's.
    store = _store(fault_proxy, s3_bucket)
    fault_proxy.script = ["drop-after"]
    assert store.put_if_absent("ledger/x/000-received.json", b'{"run_id": "run-1"}') is True
    assert fault_proxy.counts["drop-after"] == 1
    fault_proxy.script = ["drop-after"]  # and another writer's retried write is not ours
    assert store.put_if_absent("ledger/x/000-received.json", b'{"run_id": "run-2"}') is False
    assert store.get("ledger/x/000-received.json") == b'{"run_id": "run-1"}'


def test_conditional_writes_stay_exclusive_under_faults(fault_proxy, s3_bucket):
    store = _store(fault_proxy, s3_bucket)
    fault_proxy.rate = 0.3
    for n in range(5):
        winners = []

        def claim(w, n=n, winners=winners):
            if store.put_if_absent(f"claim/{n}", f"writer-{w}".encode()):
                winners.append(w)

        threads = [threading.Thread(target=claim, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1
        assert store.get(f"claim/{n}") == f"writer-{winners[0]}".encode()


def test_lasting_failure_is_a_transient_lake_error_naming_the_operation(fault_proxy, s3_bucket):
    store = _store(fault_proxy, s3_bucket, attempts=2)
    fault_proxy.rate = 1.0
    fault_proxy.faults = ("internal",)  # (SlowDown backs off for seconds: same path, slower)
    with pytest.raises(TransientLakeError, match=r"S3 PutObject on s3://.*/lake/k failed 2 times "
                                                 r"\(InternalError"):
        store.put("k", b"x")


# -- tables read in place on S3 (zones.scan_objects: Polars' own S3 reader) ---------------------


def _person_table(rows: int) -> pl.DataFrame:
    import random

    from fusionlake.lake import schema

    draw = random.Random(rows)
    return schema.conform(pl.DataFrame({
        "record_id": [f"d:{i}" for i in range(rows)],
        "name_original": [draw.randbytes(48).hex() for _ in range(rows)],  # the bulk
        "releasable_to": [["all"]] * rows,
    }), "person_record")


def test_a_table_on_s3_is_read_in_place_through_faults_fetching_only_what_is_selected(
        fault_proxy, s3_bucket, tmp_path):
    """Nothing is downloaded into the work folder; the reads pass 30% faults of every kind;
    one narrow column of a wide file fetches a small share of its bytes."""
    from fusionlake.lake import zones

    store = _store(fault_proxy, s3_bucket)
    table = _person_table(60_000)
    keys = [f"staged/person_record/{part}.parquet" for part in ("a", "b")]
    for key, half in zip(keys, (table[:30_000], table[30_000:]), strict=True):
        zones.write_frame(store, key, half)
    size = sum(info.size for info in store.list_info("staged"))
    work = tmp_path / "work"
    work.mkdir()
    fault_proxy.script = list(FAULTS)  # each kind of fault once, first, then 30% at random
    fault_proxy.rate = 0.3
    for _ in range(3):
        assert_frame_equal(zones.scan_objects(store, keys, "person_record", work).collect(),
                           table)
    assert set(FAULTS) <= set(fault_proxy.counts)
    fault_proxy.rate = 0.0
    before = fault_proxy.counts["bytes-relayed"]
    ids = zones.scan_objects(store, keys, "person_record", work).select("record_id").collect()
    assert ids["record_id"].to_list() == table["record_id"].to_list()
    fetched = fault_proxy.counts["bytes-relayed"] - before
    assert fetched < size / 4, (fetched, size)
    assert not any(work.iterdir())


def test_small_objects_as_listed_are_fetched_once_whole_and_large_ones_read_in_place(
        fault_proxy, s3_bucket, tmp_path):
    """Read in place, every query over a file fetches its footer and columns again, a round
    trip each. Listed with a size under S3Store.SMALL_OBJECT, a file is fetched whole, with one
    GET, through faults, and read locally however often its scan is collected."""
    from fusionlake.lake import zones

    store = _store(fault_proxy, s3_bucket)
    table = _person_table(3_000)
    keys = [f"staged/person_record/{i}.parquet" for i in range(6)]
    for i, key in enumerate(keys):
        zones.write_frame(store, key, table[i * 500:(i + 1) * 500])
    listed = store.list_info("staged/person_record")
    assert [i.key for i in listed] == keys
    assert all(info.size < S3Store.SMALL_OBJECT for info in listed)

    def requests_of_five_queries(objects, work: Path) -> tuple[int, int]:
        before = fault_proxy.counts["requests"]
        scan = zones.scan_objects(store, objects, "person_record", work)
        made = fault_proxy.counts["requests"] - before
        for _ in range(5):
            assert_frame_equal(scan.collect(), table)
            assert scan.select("record_id").collect().height == table.height
        return made, fault_proxy.counts["requests"] - before - made

    fetch, local_reads = requests_of_five_queries(listed, tmp_path / "fetched")
    assert (fetch, local_reads) == (len(keys), 0)
    assert sorted(p.name for p in (tmp_path / "fetched").rglob("*")
                  if p.is_file()) == sorted(k.rsplit("/", 1)[-1] for k in keys)
    _footers, in_place = requests_of_five_queries(keys, tmp_path / "unused")
    assert in_place >= 10 * len(keys), in_place  # what each query costs when read in place
    assert not (tmp_path / "unused").exists()

    fault_proxy.script = list(FAULTS)  # each kind of fault once, first, then 30% at random
    fault_proxy.rate = 0.3
    assert_frame_equal(zones.scan_objects(store, listed, "person_record",
                                          tmp_path / "flaky").collect(), table)
    assert set(FAULTS) <= set(fault_proxy.counts)
    fault_proxy.rate = 0.0

    store.SMALL_OBJECT = min(info.size for info in listed)  # every one is large now
    assert_frame_equal(zones.scan_objects(store, listed, "person_record",
                                          tmp_path / "large").collect(), table)
    assert not (tmp_path / "large").exists()  # read in place
    store.delete(keys[2])  # listed, then gone before it is fetched: named
    store.SMALL_OBJECT = S3Store.SMALL_OBJECT
    with pytest.raises(LakeError, match=f"no object '{keys[2]}'"):
        zones.scan_objects(store, listed, "person_record", tmp_path / "gone")


def test_a_store_trusted_through_a_private_ca_bundle_is_downloaded_not_read_in_place(
        fault_proxy, s3_bucket, tmp_path, monkeypatch):
    """boto3 verifies the endpoint with AWS_CA_BUNDLE; Polars' reader would not, so the tables
    are downloaded through the store as before, and read the same."""
    from fusionlake.lake import zones

    store = _store(fault_proxy, s3_bucket)
    table = _person_table(100)
    zones.write_frame(store, "staged/person_record/a.parquet", table)
    import ssl

    system = ssl.get_default_verify_paths()
    monkeypatch.setenv("AWS_CA_BUNDLE", system.cafile or system.openssl_cafile)  # the system's
    assert store.scan_source("staged/person_record/a.parquet") is not None
    bundle = tmp_path / "agency-ca.pem"
    bundle.write_text("(the endpoint here is plain HTTP: boto3 never opens it)\n")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    assert store.scan_source("staged/person_record/a.parquet") is None
    work = tmp_path / "work"
    read = zones.scan_objects(store, ["staged/person_record/a.parquet"], "person_record", work)
    assert_frame_equal(read.collect(), table)
    assert [p.name for p in work.rglob("*.parquet")] == ["a.parquet"]


def test_an_object_read_in_place_that_is_cut_or_gone_is_named_and_a_lasting_failure_is_transient(
        fault_proxy, s3_bucket, tmp_path):
    """A lasting failure is transient whether it meets the footer (when the scan is made) or
    the data (when a step collects it): the flow's retry policy (flows.tasks) retries both."""
    from fusionlake.lake import zones

    store = _store(fault_proxy, s3_bucket)
    store.SCAN_RETRIES = {**S3Store.SCAN_RETRIES, "max_retries": 2,  # (before the first scan:
                          "retry_max_backoff_ms": 200}  # the store keeps its scan options)
    whole = zones.to_parquet(_person_table(60_000))
    store.put("staged/person_record/cut.parquet", whole[: len(whole) // 2])
    for name in ("cut", "gone"):
        key = f"staged/person_record/{name}.parquet"
        with pytest.raises(zones.UnreadableFile,
                           match=f"person_record: cannot read s3://{s3_bucket}/lake/{key}"):
            zones.scan_objects(store, [key], "person_record", tmp_path)
    # listed small, it is fetched whole first: the copy is cut, and the lake's object is named
    small = zones.to_parquet(_person_table(500))
    store.put("staged/person_record/small.parquet", small[: len(small) // 2])
    [listed] = [i for i in store.list_info("staged/person_record") if "small" in i.key]
    assert listed.size < S3Store.SMALL_OBJECT
    with pytest.raises(zones.UnreadableFile,
                       match=rf"person_record: cannot read s3://{s3_bucket}/lake/{listed.key} "
                             rf"\(fetched to {tmp_path}/{listed.key}\)"):
        zones.scan_objects(store, [listed], "person_record", tmp_path)
    store.put("staged/person_record/whole.parquet", whole)
    scan = zones.scan_objects(store, ["staged/person_record/whole.parquet"], "person_record",
                              tmp_path)  # the footer is read now, the data when collected
    fault_proxy.rate = 1.0
    fault_proxy.faults = ("drop-before",)
    with pytest.raises(OSError, match="object-store error") as collected:
        scan.collect()
    assert is_transient(collected.value)
    fault_proxy.faults = ("internal",)
    with pytest.raises(TransientLakeError, match=r"person_record: reading s3://.*whole.parquet "
                                                 r"in place failed .*500 Internal Server Error"):
        zones.scan_objects(store, ["staged/person_record/whole.parquet"], "person_record",
                           tmp_path)
    refused = ("object-store error: Generic S3 error: Error performing GET http://h/b/k - "
               "Server returned non-2xx status code: {}")
    assert is_transient(OSError(refused.format("503 Service Unavailable")))
    assert not is_transient(OSError(refused.format("403 Forbidden")))


def test_botocore_failures_that_pass_are_transient():
    from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

    def client_error(status, code):
        return ClientError({"Error": {"Code": code},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")

    assert is_transient(client_error(503, "SlowDown"))
    assert is_transient(client_error(500, "InternalError"))
    assert is_transient(client_error(400, "RequestTimeout"))
    assert is_transient(ConnectionClosedError(endpoint_url="http://x"))
    assert is_transient(ReadTimeoutError(endpoint_url="http://x"))
    assert not is_transient(client_error(412, "PreconditionFailed"))
    assert not is_transient(client_error(403, "AccessDenied"))
    assert not is_transient(ValueError("bad data"))


def test_credentials_in_the_endpoint_are_never_echoed(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-key")
    assert redact("Could not connect to http://user:secret@host:9000/b") == (
        "Could not connect to http://***@host:9000/b")
    assert redact("signed with s3cr3t-key") == "signed with ***"


def test_unreachable_endpoint_with_credentials_in_its_url_is_redacted(monkeypatch):
    import boto3
    from botocore.config import Config

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y-secret")
    client = boto3.client("s3", endpoint_url="http://admin:hunter22@127.0.0.1:9",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    with pytest.raises(LakeError) as err:
        S3Store("bucket", "lake", client=client).list("raw")
    assert "cannot reach the S3 endpoint" in str(err.value)
    assert "hunter22" not in str(err.value) and "admin" not in str(err.value)


# -- whole runs ---------------------------------------------------------------------------------

PEOPLE = 200


@pytest.fixture(scope="module")
def drops(tmp_path_factory):
    from fusionlake.synth import generate

    out = tmp_path_factory.mktemp("drops")
    generate(PEOPLE, 11, out)
    return out


@pytest.fixture(scope="module")
def api_url(prefect_harness):
    """CLI runs in subprocesses report to the test's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def _feed_dirs(drops_dir):
    return sorted(p for p in drops_dir.glob("*/*") if p.is_dir())


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("fusionlake"))
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **env})


# Columns that say when or by which run something happened: they differ between any two runs.
# (a published drop's reason names the mart version it went into, mart_info the resolution
# version it was built from)
_VOLATILE = re.compile(r"(_at$|_time$|^run_id$|version$|^built|^published|^reason$)")


def _mart_tables(con) -> dict[str, pl.DataFrame]:
    names = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE NOT temporary ORDER BY 1").fetchall()]
    out = {}
    for name in names:
        frame = con.sql(f'SELECT * FROM "{name}"').pl()
        frame = frame.select([c for c in frame.columns if not _VOLATILE.search(c)])
        out[name] = frame.sort(frame.columns, nulls_last=True) if frame.columns else frame
    return out


@pytest.mark.slow
def test_drop_run_and_sql_pass_at_30_percent_faults_with_the_marts_of_a_clean_run(
        api_url, drops, s3_bucket, fault_proxy, tmp_path):
    from polars.testing import assert_frame_equal

    from flows.pipeline import pipeline
    from fusionlake.lake import layout, versions
    from fusionlake.lake.ledger import Ledger
    from fusionlake.lake.store import open_store
    from fusionlake.lake.zones import read_resolution
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.marts import open_latest

    clean = open_store(str(tmp_path / "clean"))
    for feed_dir in _feed_dirs(drops):
        deliver(clean, feed_dir.parent.name, feed_dir.name, sorted(feed_dir.iterdir()))
    assert not pipeline(lake=clean.uri, run_id="clean").problems

    lake = f"s3://{s3_bucket}/lake"
    env = {"AWS_ENDPOINT_URL": fault_proxy.url, "PREFECT_API_URL": api_url}
    fault_proxy.rate = 0.3
    for feed_dir in _feed_dirs(drops):
        done = _cli("drop", "--lake", lake, "--agency", feed_dir.parent.name, "--feed",
                    feed_dir.name, *map(str, sorted(feed_dir.iterdir())), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    done = _cli("run", "--lake", lake, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    query = _cli("sql", "--lake", lake, "--format", "csv",
                 "select count(*) as n from entity_record", env=env)
    assert query.returncode == 0, query.stdout + query.stderr
    injected = dict(fault_proxy.counts)
    fault_proxy.rate = 0.0
    assert all(injected.get(f, 0) > 10 for f in ("slowdown", "internal", "drop-before",
                                                  "drop-after")), injected

    store = open_store(lake)  # straight to moto from here on
    assert sorted(e.state for e in Ledger(store).entries()) == ["published"] * 5
    ours, theirs = open_latest(store, "all"), open_latest(clean, "all")
    try:
        mine, clean_tables = _mart_tables(ours), _mart_tables(theirs)
    finally:
        ours.close()
        theirs.close()
    assert mine.keys() == clean_tables.keys() and "entity_record" in mine
    for name, frame in mine.items():
        assert_frame_equal(frame, clean_tables[name], check_row_order=True), name
    assert query.stdout.split() == ["n", str(mine["entity_record"].height)]

    # A full resolution again, through the same faults: it reads the previous history only
    # after resolving, and must keep it whole, in front of its own changes.
    def version() -> str:
        return versions.read_pointer(store, layout.resolution_prefix("all"))["version"]

    before, first = read_resolution(store), version()
    # every kind of fault but SlowDown, which the first run met already and whose back-offs of
    # seconds would only make this run slower (30 s of the suite, not another path)
    fault_proxy.rate, fault_proxy.faults = 0.3, ("internal", "drop-before", "drop-after")
    done = _cli("run", "--full", "--lake", lake, env=env)
    fault_proxy.rate = 0.0
    assert done.returncode == 0, done.stdout + done.stderr
    after = read_resolution(store)
    assert version() != first  # a new resolution was written
    assert after["entity_history"].height >= before["entity_history"].height
    assert_frame_equal(after["entity_history"].head(before["entity_history"].height),
                       before["entity_history"])
    assert_frame_equal(after["entity_record"].sort("record_id"),
                       before["entity_record"].sort("record_id"))


def _header_only(src: Path, dest: Path) -> Path:
    lines = src.read_text(encoding="utf-8-sig").splitlines()
    dest.write_text(lines[0] + "\n", encoding="utf-8-sig")
    return dest


def _without_column(src: Path, dest: Path, column: str) -> Path:
    rows = list(csv.reader(src.read_text(encoding="utf-8-sig").splitlines()))
    drop = rows[0].index(column)
    with dest.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows([r[:drop] + r[drop + 1:] for r in rows])
    return dest


@pytest.mark.slow
def test_bad_drops_and_a_broken_page_stop_no_other_drop(prefect_harness, drops, tmp_path):
    from flows.pipeline import pipeline
    from fusionlake.lake import layout
    from fusionlake.lake.ledger import Ledger
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.marts import open_latest

    store = open_store(str(tmp_path / "lake"))
    first = drops / "cn_mps" / "suspects"
    deliver(store, "cn_mps", "suspects", sorted(first.iterdir()))
    assert not pipeline(lake=store.uri, run_id="run-1").problems
    # a stored GX result that GX cannot read any more: its page cannot be rendered
    gx_key = next(k for k in store.list("validation") if k.endswith("/gx_result.json"))
    broken = json.loads(store.get(gx_key))
    broken["results"] = [{"expectation_config": {"type": 42}, "success": "perhaps"}]
    store.put(gx_key, json.dumps(broken).encode())

    src = next((drops / "th_imm" / "repatriations").iterdir())
    deliver(store, "th_imm", "repatriations", [src, _header_only(src, tmp_path / "empty.csv"),
                                               _without_column(src, tmp_path / "nocol.csv",
                                                               "passenger_name")])
    deliver(store, "mm_police", "detainees", sorted((drops / "mm_police" / "detainees").iterdir()))
    second = pipeline(lake=store.uri, run_id="run-2")
    assert not second.problems, second.problems  # bad data is not a failure of the run
    by_file = {e.file_name: e for e in Ledger(store).entries()}
    assert by_file["empty.csv"].state == "rejected"
    assert "no data rows" in by_file["empty.csv"].reason
    assert by_file["nocol.csv"].state == "rejected"
    assert "passenger_name" in by_file["nocol.csv"].reason
    assert by_file[src.name].state == "published"
    assert sorted(e.state for e in by_file.values()) == (
        ["published"] * 3 + ["rejected"] * 2)
    con = open_latest(store, "all")
    try:
        assert con.execute("select count(distinct drop_id) from entity_record").fetchone()[0] == 3
    finally:
        con.close()
    # Data Docs were rebuilt: the broken page and the rejected drops' pages say what went wrong
    index = store.get(f"{layout.DATA_DOCS}/index.html").decode()
    assert "page not rendered" in index
    broken_id = gx_key.split("/")[3]
    page = next(k for k in store.list(layout.DATA_DOCS) if k.endswith(f"/{broken_id}.html"))
    assert "could not be rendered" in store.get(page).decode()
    assert store.exists(f"{layout.RUN_REPORTS}/run-2.md")


def test_drop_of_a_file_with_a_253_byte_thai_name(tmp_path):
    name = "ผู้ต้องหา" * 9 + "ก" * 2 + ".csv"  # 83 Thai characters and .csv: 253 bytes
    assert len(name.encode()) == 253
    src = tmp_path / name
    src.write_text("suspect_id,name\nA1,สมชาย\n", encoding="utf-8")
    lake = tmp_path / "lake"
    done = _cli("drop", "--lake", str(lake), "--agency", "th_imm", "--feed", "detentions",
                str(src), env={})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    landed = lake / "landing" / "th_imm" / "detentions" / name
    assert landed.read_bytes() == src.read_bytes()
    assert [p.name for p in landed.parent.iterdir()] == [name]  # no temp file left


def test_credentials_in_aws_endpoint_url_are_never_printed(tmp_path):
    src = tmp_path / "x.csv"
    src.write_text("a\n1\n", encoding="utf-8")
    env = {"AWS_ENDPOINT_URL": "http://fusion:pa55word@127.0.0.1:9",
           "AWS_ACCESS_KEY_ID": "AKIAFUSION", "AWS_SECRET_ACCESS_KEY": "very-secret-key",
           "AWS_MAX_ATTEMPTS": "1"}
    for args in (["drops"], ["drop", "--agency", "th_imm", "--feed", "detentions", str(src)]):
        done = _cli(*args, "--lake", "s3://bucket/lake", env=env)
        assert done.returncode == 2, done.stderr
        assert "cannot reach the S3 endpoint" in done.stderr
        assert "pa55word" not in done.stderr + done.stdout
        assert "very-secret-key" not in done.stderr + done.stdout


# -- model training never fails a run ------------------------------------------------------------


def _planted_records() -> pl.DataFrame:
    """Per birth date, two records of one man (TH) and two women of other names (MM): every
    pair that differs in sex also differs in nationality, and no other pair does."""
    import datetime as dt

    rows = []
    for n in range(40):
        born = dt.date(1970, 1, 1) + dt.timedelta(days=37 * n)
        for k, (name, sex, nat) in enumerate([(f"SOMCHAI{n}", "M", "TH")] * 2
                                             + [(f"AYE{n}X", "F", "MM"),
                                                (f"MYA{n}Y", "F", "MM")]):
            rows.append({"record_id": f"r{n:03d}{k}", "name_key_sorted": name,
                         "name_key_phonetic": name[:4], "given_name": name,
                         "family_name": None, "birth_date": born,
                         "birth_date_precision": "day", "sex": sex, "nationality": nat,
                         "birth_year": born.year})
    return pl.DataFrame(rows)


def _settings(**changes):
    """The declared settings, trained from 20 records on."""
    from transforms.resolution.settings import ResolveSettings

    return ResolveSettings().with_(min_records_to_train=20, **changes)


def test_em_driving_an_m_probability_below_splinks_minimum_does_not_fail_scoring():
    from splink.internals.comparison_level import M_U_CLAMP_MIN

    from transforms.resolution.splink import score_pairs

    # EM's first session (blocked on birth date) finds that no matching pair differs in sex or
    # nationality: those levels' m falls to 0.0, which Splink 5 refuses (ValueError), as it
    # refused 3.8e-316 at a million people
    stats: dict = {}
    scored = score_pairs(_planted_records(), _settings(), stats)
    try:
        assert stats["model"] == "trained on the data"
        assert stats["model_notes"] == [
            "EM drove m of nationality level 'all other' to 0, below Splink's minimum: "
            "clamped to 1e-300",
            "EM drove m of sex level 'all other' to 0, below Splink's minimum: clamped to 1e-300"]
        model = json.loads(stats["model_json"])
        probs = [lv[k] for c in model["comparisons"] for lv in c["comparison_levels"]
                 for k in ("m_probability", "u_probability") if isinstance(lv.get(k), float)]
        assert probs and min(probs) >= M_U_CLAMP_MIN
        # the two records of each man are still found
        same = scored.pairs.filter(pl.col("record_id_l").str.slice(0, 4)
                                   == pl.col("record_id_r").str.slice(0, 4))
        assert same.filter(pl.col("record_id_l").str.ends_with("0")
                           & pl.col("record_id_r").str.ends_with("1")).height == 40
    finally:
        scored.close()


def test_training_that_still_fails_falls_back_to_the_last_good_model():
    from transforms.resolution.splink import score_pairs

    good: dict = {}
    score_pairs(_planted_records(), _settings(), good).close()
    broken = _settings(
        em_rules=[{"requires": ["birth_date"], "sql": "l.no_such_column = r.no_such_column"}],
        fallback_model=good["model_json"])  # a session Splink cannot run
    stats: dict = {}
    score_pairs(_planted_records(), broken, stats).close()
    assert stats["model"] == "the last good model"
    assert "model_json" not in stats  # a failed training leaves no model to keep
    assert stats["model_notes"][0].startswith("model training failed (")
    # and with no model kept yet: the declared priors
    stats = {}
    score_pairs(_planted_records(), broken.with_(fallback_model=None), stats).close()
    assert stats["model"] == "declared priors"


@pytest.mark.slow
def test_a_jsonl_broken_in_several_blocks_and_a_cut_workbook_beside_good_drops(drops, tmp_path):
    """A run over a JSON Lines drop with bad lines in three of its blocks (at their edges, and
    as its first line), a workbook cut in half and a good CSV drop: the JSON Lines drop stages
    every good line and quarantines each bad one under its own line number, the workbook is
    rejected naming its file, the CSV drop is published, and the run has no problem."""
    from fusionlake.lake.ledger import Ledger
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.read import _JSON_BLOCK
    from fusionlake.pipeline.run import run

    def person(i: int) -> str:  # a different person on each line
        name = "".join("AEIKLMNOSTUWYZ"[i // 14**k % 14] for k in range(4))
        return json.dumps({"case_no": f"MP-{i:05d}", "name": f"{name.title()} Aung",
                           "sex": "MF"[i % 2], "date_of_birth": f"{1950 + i % 50}-{1 + i % 12:02d}"
                           f"-{1 + i % 28:02d}", "nationality": "Myanmar", "nrc": None,
                           "passport_no": None, "phone": f"0942{i:07d}", "compound": "KK Park",
                           "township": "Myawaddy", "detained_on": "2025-01-05"})

    n = 2 * _JSON_BLOCK + 500
    lines = [person(i) for i in range(n)]
    planted = {0: "<html>504 Gateway Timeout</html>", _JSON_BLOCK - 1: lines[1][:-9],
               _JSON_BLOCK: "[1, 2]", 2 * _JSON_BLOCK + 7: "null"}
    for i, text in planted.items():
        lines[i] = text
    detainees = tmp_path / "detainees.jsonl"
    detainees.write_text("\n".join(lines) + "\n", encoding="utf-8")
    workbook = next((drops / "th_imm" / "detentions").iterdir())
    cut = tmp_path / "detentions.xlsx"
    cut.write_bytes(workbook.read_bytes()[: workbook.stat().st_size // 2])

    store = open_store(str(tmp_path / "lake"))
    deliver(store, "mm_police", "detainees", [detainees])
    deliver(store, "th_imm", "detentions", [cut])
    deliver(store, "cn_mps", "suspects", sorted((drops / "cn_mps" / "suspects").iterdir()))
    summary = run(Settings.from_env(store.uri), run_id="hostile")
    assert not summary.problems, summary.problems  # bad data is not a failure of the run

    by_file = {e.file_name: e for e in Ledger(store).entries()}
    assert by_file["detentions.xlsx"].state == "rejected"
    assert by_file["detentions.xlsx"].reason.startswith(
        "detentions.xlsx: not an Excel .xlsx file (truncated or another format)")
    assert by_file["detainees.jsonl"].state == by_file["suspects.csv"].state == "published"
    drop = by_file["detainees.jsonl"].drop_id
    [result] = [d for d in summary.drops if d.drop_id == drop]
    assert (result.rows, result.quarantined) == (n, len(planted))
    quarantine = pl.read_parquet(store.get(next(
        k for k in store.list("quarantine") if drop in k))).sort("line")
    assert quarantine["line"].to_list() == [i + 1 for i in sorted(planted)]
    assert quarantine["raw_line"].to_list() == [planted[i] for i in sorted(planted)]  # kept
    staged = pl.read_parquet(store.get(next(
        k for k in store.list("staged/person_record") if drop in k)))
    assert staged.height == n - len(planted)


def test_files_that_each_rejected_a_whole_drop_beside_good_ones(drops, tmp_path):
    """One run over the hostile shapes this round found, beside a good drop: JSON Lines with
    a NaN line, a line nested 200,000 deep and a line of bytes that are not UTF-8 (each of
    them rejected the whole drop); a suspects CSV with CR-only line ends (refused for a
    repeated column); a workbook with a stray value in XFD1048576 (aborted the run). Each bad
    line is quarantined under its number, the CR file is read in full, the workbook alone is
    rejected, the good drop is published, and the run has no problem."""
    import xlsxwriter

    from fusionlake.lake.ledger import Ledger
    from fusionlake.lake.settings import Settings
    from fusionlake.lake.store import open_store
    from fusionlake.pipeline.land import deliver
    from fusionlake.pipeline.run import run

    source = next((drops / "mm_police" / "detainees").iterdir()).read_bytes().splitlines()
    planted = {3: b'{"case_no": NaN}', 10: b'{"case_no": ' + b"[" * 200_000 + b"]" * 200_000
               + b"}", 20: b'{"case_no": "MP-\xff\xfe"}'}
    lines = list(source)
    for at in sorted(planted):
        lines.insert(at, planted[at])
    detainees = tmp_path / "detainees.jsonl"
    detainees.write_bytes(b"\n".join(lines) + b"\n")
    suspects_csv = next((drops / "cn_mps" / "suspects").iterdir()).read_bytes()
    suspects = tmp_path / "suspects.csv"
    suspects.write_bytes(suspects_csv.replace(b"\r\n", b"\n").replace(b"\n", b"\r"))
    workbook = tmp_path / "detentions.xlsx"
    book = xlsxwriter.Workbook(str(workbook))
    book.add_worksheet().write(1048575, 16383, "x")
    book.close()

    store = open_store(str(tmp_path / "lake"))
    deliver(store, "mm_police", "detainees", [detainees])
    deliver(store, "cn_mps", "suspects", [suspects])
    deliver(store, "th_imm", "detentions", [workbook])
    deliver(store, "th_imm", "repatriations",
            sorted((drops / "th_imm" / "repatriations").iterdir()))
    summary = run(Settings.from_env(store.uri), run_id="hostile")
    assert not summary.problems, summary.problems  # bad data is not a failure of the run

    by_file = {e.file_name: e for e in Ledger(store).entries()}
    assert by_file["detentions.xlsx"].state == "rejected"
    assert "has values as far as cell XFD1048576" in by_file["detentions.xlsx"].reason
    assert {by_file[n].state for n in ("detainees.jsonl", "suspects.csv",
                                       "repatriations.csv")} == {"published"}
    drop = by_file["detainees.jsonl"].drop_id
    quarantine = pl.read_parquet(store.get(next(
        k for k in store.list("quarantine") if drop in k)))
    ours = quarantine.filter(pl.col("line").is_in([at + 1 for at in planted])).sort("line")
    assert ours["reason"].to_list() == [
        "line 4: a value the JSON reader refuses (NaN, Infinity or a number out of range)",
        "line 11: JSON nested too deeply to read",
        "line 21: bytes that are not valid utf-8 (each shown as \ufffd in raw_line); the other "
        "lines were read"]
    [result] = [d for d in summary.drops if d.name == "cn_mps/suspects/suspects.csv"]
    rows = suspects_csv.decode("gb18030").replace("\r\n", "\n").strip("\n").count("\n")
    assert result.rows == rows and result.state == "staged"


def test_a_pointer_is_repaired_through_faults_and_a_sound_one_left_alone(fault_proxy,
                                                                         s3_bucket):
    """Clean start reads every pointer and mends the broken ones: through 30% faults (no
    SlowDown: its back-offs only make the test slower) a sound pointer must never be taken for
    a broken one and moved, and a broken one must end pointing at the newest complete
    version."""
    from fusionlake.lake import versions, zones

    store = _store(fault_proxy, s3_bucket)
    for run in (1, 2):
        zones.write_resolution(store, {"entity_record": pl.DataFrame(
            {"entity_id": [f"E{run}"], "record_id": ["r1"]})}, run_id=f"r{run}", retention=5)
    newest = versions.read_pointer(store, zones.RESOLUTION)
    fault_proxy.rate, fault_proxy.faults = 0.3, ("internal", "drop-before", "drop-after")
    for _ in range(10):
        assert versions.repair_pointer(store, zones.RESOLUTION) is None
    store.put(f"{zones.RESOLUTION}/LATEST", b"{cut sh")
    assert versions.repair_pointer(store, zones.RESOLUTION) == (
        f"{zones.RESOLUTION}/LATEST was not a pointer: pointed again at {newest['version']}")
    injected = sum(fault_proxy.counts.values())
    fault_proxy.rate = 0.0
    assert injected > 3, fault_proxy.counts
    assert versions.read_pointer(store, zones.RESOLUTION) == newest
