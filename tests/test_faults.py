"""Faults and crashes: storage errors are retried where they happen, bad drops stop nothing.

The S3 tests run through tests/faultproxy.py in front of the moto server: 503 SlowDown, 500
InternalError, and connections dropped before or after the endpoint acted, at a seeded rate.
"""

from __future__ import annotations

import threading

import pytest
from conftest import s3_client

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
