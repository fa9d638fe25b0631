"""The object store contract, run on both backends (local folder and S3 over HTTP)."""

from __future__ import annotations

import threading

import polars as pl
import pytest

from fusionlake.lake.store import LakeError, NotFound, S3Store, open_store, safe_part


def test_put_get_roundtrip_and_overwrite(store):
    store.put("a/b/c.txt", b"one")
    assert store.get("a/b/c.txt") == b"one"
    store.put("a/b/c.txt", b"two")
    assert store.get("a/b/c.txt") == b"two"
    assert store.exists("a/b/c.txt")
    assert not store.exists("a/b/missing.txt")


def test_get_missing_raises_not_found_naming_key(store):
    with pytest.raises(NotFound, match="nothing/here"):
        store.get("nothing/here")


def test_put_if_absent_creates_once(store):
    assert store.put_if_absent("ptr/LATEST", b"v1") is True
    assert store.put_if_absent("ptr/LATEST", b"v2") is False
    assert store.get("ptr/LATEST") == b"v1"


def test_put_if_absent_retry_of_own_write_counts_as_ours(store):
    # The retry trap: a conditional write whose answer was lost is retried and meets its own
    # object. Identical bytes (which carry the writer's run id) mean the write was ours.
    assert store.put_if_absent("lease", b"run-1") is True
    assert store.put_if_absent("lease", b"run-1") is True
    assert store.put_if_absent("lease", b"run-2") is False


def test_put_if_absent_is_exclusive_between_threads(store):
    winners = []

    def claim(n):
        if store.put_if_absent("claim/x", f"writer-{n}".encode()):
            winners.append(n)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.get("claim/x") == f"writer-{winners[0]}".encode()


def test_list_is_recursive_sorted_and_prefix_bounded(store):
    for key in ["p/b/2", "p/a/1", "p/c", "pp/x", "q/y"]:
        store.put(key, b".")
    assert store.list("p") == ["p/a/1", "p/b/2", "p/c"]
    assert store.list("nothing") == []
    info = {i.key: i for i in store.list_info("p")}
    assert info["p/c"].size == 1


def test_list_pages_past_1000_keys(store):
    keys = [f"many/{i:05d}" for i in range(1105)]
    for key in keys:
        store.put(key, b"")
    assert store.list("many") == keys


def test_delete_is_idempotent(store):
    store.put("d/x", b"1")
    store.delete("d/x")
    store.delete("d/x")
    assert not store.exists("d/x")


def test_a_local_lake_keeps_no_folder_its_deletes_left_empty(tmp_path):
    """Retention deletes a version's files one by one: a local lake kept every version's
    folder, empty, about seven a run (20,000 a month at a run every 15 minutes, each walked by
    every run that lists its zone; found by a soak of 40 scheduled runs)."""
    from fusionlake.lake.store import LocalStore

    store = LocalStore(tmp_path / "lake")
    for key in ("marts/th_imm/v1/fusion.duckdb", "marts/th_imm/v1/MANIFEST",
                "marts/th_imm/v2/fusion.duckdb", "marts/th_imm/LATEST"):
        store.put(key, b"x")
    store.delete("marts/th_imm/v1/fusion.duckdb")
    assert store.path("marts/th_imm/v1").is_dir()  # its other file is still there
    store.delete("marts/th_imm/v1/MANIFEST")
    assert not store.path("marts/th_imm/v1").exists()
    assert store.list("marts") == ["marts/th_imm/LATEST", "marts/th_imm/v2/fusion.duckdb"]
    for key in store.list("marts"):
        store.delete(key)
    assert store.root.is_dir() and list(store.root.iterdir()) == []  # the lake itself stays
    store.put("marts/th_imm/v3/fusion.duckdb", b"y")  # and takes new folders as before
    assert store.get("marts/th_imm/v3/fusion.duckdb") == b"y"


def test_a_local_lakes_folders_are_listed_by_its_own_user_alone(tmp_path):
    """The files were 0600 but the folders 0755: any local user could list
    raw/cn_mps/fraud_reports/ and learn which drops an agency-only feed sent, when and how
    large. Every folder the store makes is 0700, whatever the umask lets through; the lake's
    own folder stays as made (the way to the marts, which publishing opens to the group)."""
    import os
    import stat

    from fusionlake.lake.store import LocalStore

    store = LocalStore(tmp_path / "lake")
    old = os.umask(0o002)
    try:
        store.put("raw/cn_mps/fraud_reports/d1/a.csv", b"x")
        assert store.put_if_absent("ledger/drops/d1/000-received.json", b"{}")
        source = tmp_path / "big.bin"
        source.write_bytes(b"y" * 10)
        store.upload_file("staged/person_record/cn_mps/fraud_reports/d1.parquet", source)
        store.copy("raw/cn_mps/fraud_reports/d1/a.csv", "quarantine/cn_mps/d1/a.csv")
    finally:
        os.umask(old)
    folders = [p for p in store.root.rglob("*") if p.is_dir()]
    assert len(folders) == 14
    assert {p.relative_to(store.root).as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in folders} == {p.relative_to(store.root).as_posix(): 0o700 for p in folders}


def test_upload_and_download_file(store, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * 40_000)  # 10 MB: multipart on S3
    store.upload_file("files/big.bin", src)
    dest = tmp_path / "out" / "big.bin"
    store.download_file("files/big.bin", dest)
    assert dest.read_bytes() == src.read_bytes()


def test_move_file_stores_the_file_and_takes_it(store, tmp_path):
    src = tmp_path / "mart.bin"
    data = bytes(range(256)) * 4_000
    src.write_bytes(data)
    store.move_file("files/mart.bin", src)
    assert not src.exists()
    assert store.get("files/mart.bin") == data
    assert store.list("files") == ["files/mart.bin"]  # no temporary left beside it


def test_copy_is_a_copy_inside_the_store(store):
    data = bytes(range(256)) * 40_000  # 10 MB: a multipart copy on S3
    store.put("a/table.parquet", data)
    store.copy("a/table.parquet", "b/table.parquet")
    assert store.get("b/table.parquet") == data
    # the two objects are independent: replacing or deleting one leaves the other
    store.put("a/table.parquet", b"new")
    assert store.get("b/table.parquet") == data
    store.delete("b/table.parquet")
    assert store.get("a/table.parquet") == b"new"
    assert store.list("") == ["a/table.parquet"]  # no temporary left behind
    with pytest.raises(NotFound, match="missing"):
        store.copy("a/missing", "c/x")
    assert not store.exists("c/x")


@pytest.mark.parametrize("bad", ["/abs", "a/../b", "a//b", ""])
def test_invalid_keys_are_refused(store, bad):
    with pytest.raises(ValueError):
        store.put(bad, b"x")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "etc_passwd"),
        ("..\\..\\windows\\system32", "windows_system32"),
        ("report\x00\n2025.csv", "report_2025.csv"),
        ("嫌疑人 名单.csv", "嫌疑人_名单.csv"),
        ("ผู้ต้องหา.xlsx", "ผู้ต้องหา.xlsx"),
        ("ဖမ်းဆီးမှု.jsonl", "ဖမ်းဆီးမှု.jsonl"),
    ],
)
def test_safe_part_keeps_names_inside_their_prefix(name, expected):
    assert safe_part(name) == expected
    assert "/" not in safe_part(name)


def test_safe_part_refuses_names_with_nothing_left():
    with pytest.raises(ValueError):
        safe_part("../..")


def test_missing_bucket_is_a_clear_error(s3_endpoint):
    store = open_store("s3://no-such-bucket-fusionlake/lake")
    with pytest.raises(LakeError, match="bucket 'no-such-bucket-fusionlake' does not exist"):
        store.list("raw")


def test_unreachable_endpoint_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: refused
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", config=Config(retries={"max_attempts": 1}, connect_timeout=1))
    with pytest.raises(LakeError, match="cannot reach the S3 endpoint"):
        S3Store("bucket", "lake", client=client).list("raw")


def test_lake_uri_forms(tmp_path):
    assert open_store(tmp_path).uri == str(tmp_path.resolve())
    assert open_store(f"file://{tmp_path}").uri == str(tmp_path.resolve())
    with pytest.raises(LakeError, match="only local paths and s3://"):
        open_store("gs://bucket/x")
    with pytest.raises(LakeError, match="names no bucket"):
        open_store("s3:///x")


def test_conforming_a_frame_without_columns_keeps_it_empty():
    """An empty input (no quarantine yet) must not become one row of nulls in a mart."""
    from fusionlake.lake.schema import conform_columns

    columns = {"drop_id": pl.String(), "source_row": pl.Int64()}
    for frame in (pl.DataFrame(), pl.DataFrame().lazy()):
        out = conform_columns(frame, columns)
        out = out.collect() if isinstance(out, pl.LazyFrame) else out
        assert out.shape == (0, 2) and out.schema == pl.Schema(columns)
    two = conform_columns(pl.DataFrame({"drop_id": ["a", "b"]}), columns)
    assert two.rows() == [("a", None), ("b", None)]


@pytest.mark.parametrize(("backend", "root"), [("local", "o'neil #1 ทะเลสาบ"),
                                               ("s3", "o'neil [1]*?#ทะเลสาบ")])
def test_tables_are_scanned_under_a_lake_root_with_glob_and_url_characters(backend, root,
                                                                          tmp_path, request):
    """A lake's root is the user's to name: on S3 ``[``, ``*``, ``?`` and ``#`` in it are
    characters of a key, not a glob pattern or a URL's query or fragment, when its tables are
    scanned in place (zones.scan_objects); a local root may not have the first three."""
    from fusionlake.lake import zones

    uri = (str(tmp_path / root) if backend == "local"
           else f"s3://{request.getfixturevalue('s3_bucket')}/{root}")
    store = open_store(uri)
    assert store.uri.endswith(root)  # (on S3: "?" and "#" are not a URL's query and fragment)
    frame = pl.DataFrame({"record_id": ["d:1", "d:2"], "e164": ["+66812345678", None]})
    zones.write_frame(store, "staged/phone/th_imm/detentions/d.parquet", frame)
    zones.write_frame(store, "staged/phone/th_imm/detentions/[d]*.parquet", frame[:1])
    scanned = zones.scan_objects(store, ["staged/phone/th_imm/detentions/d.parquet"], "phone",
                                 tmp_path / "work").collect()
    assert scanned.select(frame.columns).equals(frame)
    assert not (tmp_path / "work").exists()  # read in place on both backends
    # listed, the small files of an S3 lake are fetched into the work folder under their keys
    listed = zones.scan_objects(store, store.list_info("staged/phone"), "phone",
                                tmp_path / "work").collect()
    assert listed.select(frame.columns).equals(pl.concat([frame[:1], frame]))
    fetched = sorted(p.name for p in (tmp_path / "work").rglob("*.parquet"))
    assert fetched == ([] if backend == "local" else ["[d]*.parquet", "d.parquet"])


def test_side_by_side_keeps_order_and_stops_at_the_first_failure():
    from fusionlake.lake.store import FETCHES_AT_ONCE, side_by_side

    assert side_by_side(lambda i: i * i, range(100)) == [i * i for i in range(100)]
    assert side_by_side(str, []) == []
    made = []

    def fetch(i: int) -> int:
        made.append(i)
        if i == 3:
            raise NotFound(f"no object {i}")
        threading.Event().wait(0.01)  # the others take a while, as requests do
        return i

    with pytest.raises(NotFound, match="no object 3"):
        side_by_side(fetch, range(1_000))
    # the calls already under way end; the ones not started are not made
    assert 3 in made and len(made) < 1_000 - FETCHES_AT_ONCE, len(made)


@pytest.mark.parametrize("name", ["lake[1]", "lake*", "lake?"])
def test_a_local_lake_whose_path_duckdb_would_read_as_a_pattern_is_refused(name, tmp_path):
    with pytest.raises(LakeError, match=r"in its path, which DuckDB and Polars read as "
                                        r"patterns: choose a folder without \* \? \[ \]"):
        open_store(str(tmp_path / name))
    assert not (tmp_path / name).exists()


def test_the_stewards_tables_are_fetched_side_by_side_in_the_lake_s_order(tmp_path):
    """Every publish reads each drop's validation results, GX result and quarantine, and every
    audit entry (one per query an analyst ran): on S3 a round trip each, so they are fetched
    side by side, and come out as read one by one."""
    from fusionlake.lake import audit, zones
    from fusionlake.lake.store import LocalStore

    class Slow(LocalStore):
        """A store whose reads take a while, as S3's do, counting those under way."""

        def __init__(self, root):
            super().__init__(root)
            self.running = self.most = 0
            self.lock = threading.Lock()

        def get(self, key: str) -> bytes:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                threading.Event().wait(0.02)
                return super().get(key)
            finally:
                with self.lock:
                    self.running -= 1

    plain = LocalStore(tmp_path / "lake")
    for i in range(24):
        drop = f"d{i:02d}"
        zones.write_validation(
            plain, "th_imm", "detentions", drop,
            pl.DataFrame({"expectation": [f"e{i}"], "success": [i % 3 > 0]}),
            pl.DataFrame({"source_row": [i], "reason": [f"bad {i}"], "name": [f"n{i}"]}),
            {"success": i % 3 > 0, "drop": drop})
        audit.record(plain, "sql", who=f"analyst{i}", query=f"SELECT {i}")
    readers = {
        "validation results": zones.read_validation_results,
        "GX results": zones.read_gx_results,
        "quarantine": zones.read_quarantine,
        "audit log": audit.frame,
    }
    for what, read in readers.items():
        slow = Slow(tmp_path / "lake")
        got, expected = read(slow), read(plain)
        assert slow.most > 1, what  # side by side
        if isinstance(got, pl.DataFrame):
            assert got.equals(expected) and got.height == 24, what
        else:
            assert got == expected and len(got) == 24, what
    assert zones.read_quarantine(plain)["reason"].to_list() == [f"bad {i}" for i in range(24)]
