"""The object store: one small interface, two thin adapters (a local folder and S3).

Keys are ``/``-separated strings relative to the lake root (``raw/th_imm/detentions/<id>/f.xlsx``).
Everything else in fusionlake talks to :class:`ObjectStore` only, so the local folder (the embedded
default) and any S3 endpoint pass the same test suite (docs/architecture.md, property 5).

Two kinds of write:

* :meth:`ObjectStore.put` replaces an object atomically (readers see the old or the new bytes, never
  half of them): temp file + rename on disk, a single PUT on S3.
* :meth:`ObjectStore.put_if_absent` creates an object only if no object has that key:
  ``link(2)`` on disk, ``If-None-Match: *`` on S3. It is what makes ledger entries, pointers and
  leases safe between concurrent runs. It guards against the retry trap (a retried conditional
  PUT answers 412 although the first attempt succeeded) by reading the object back: identical
  bytes mean the write was ours. Callers put something unique to the writer (a run id) in what
  they write, so that two writers never produce identical bytes by accident.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

__all__ = [
    "LakeError",
    "LocalStore",
    "NotFound",
    "ObjectInfo",
    "ObjectStore",
    "S3Store",
    "TransientLakeError",
    "is_transient",
    "join_key",
    "open_store",
    "safe_part",
]


class LakeError(Exception):
    """A storage problem a person can act on; the message says what and what to do."""


class TransientLakeError(LakeError):
    """A storage failure that may pass (5xx, throttling, a dropped connection, a timeout):
    worth retrying with backoff. Any other LakeError needs a person."""


#: S3 error codes that say "try again later", whatever the HTTP status.
TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "TooManyRequests",
})  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a storage failure that may pass: the one retry
    rule of every stage."""
    from botocore.exceptions import ClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        # closed, reset or timed-out connections, an unreachable endpoint
        if isinstance(exc, TransientLakeError | ConnectionError | TimeoutError
                      | BotoConnectionError):
            return True
        if isinstance(exc, ClientError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            code = exc.response.get("Error", {}).get("Code", "")
            return status >= 500 or status == 429 or code in TRANSIENT_CODES
        exc = exc.__cause__ or exc.__context__
    return False


class NotFound(LakeError, KeyError):
    """No object has this key."""

    def __str__(self) -> str:  # KeyError would add quotes
        return str(self.args[0]) if self.args else "not found"


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing says about one object, without reading it."""

    key: str
    size: int
    etag: str  # changes whenever the content may have changed


def safe_part(name: str) -> str:
    """Turn a user-supplied name into one safe key segment.

    Path separators, ``..``, control and format characters and other punctuation cannot escape
    the prefix they are put under: ``../../etc/passwd`` becomes ``etc_passwd``. Letters of any
    script are kept (agencies name files in Thai and Chinese).

    >>> safe_part("../../etc/passwd")
    'etc_passwd'
    >>> safe_part("ผู้ต้องหา 2025.xlsx")
    'ผู้ต้องหา_2025.xlsx'
    """
    text = unicodedata.normalize("NFC", str(name))
    text = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    parts = [p for p in re.split(r"[\\/]+", text) if p not in ("", ".", "..")]
    cleaned = "_".join(_clean_segment(p) for p in parts)
    cleaned = cleaned.strip("._ ")
    if not cleaned:
        raise ValueError(f"name {name!r} has nothing usable as a file name")
    return cleaned[:200]


def _clean_segment(part: str) -> str:
    out = []
    for ch in part:
        if ch.isalnum() or unicodedata.category(ch).startswith("M") or ch in ".-+@=,":
            out.append(ch)
        else:
            out.append("_")
    return re.sub(r"_+", "_", "".join(out)).strip("_")


def join_key(*parts: str) -> str:
    """Join already-safe key segments with ``/``."""
    return "/".join(p.strip("/") for p in parts if p)


class ObjectStore(ABC):
    """What the lake needs from a store. Keys never start with ``/``."""

    uri: str

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; :class:`NotFound` if there is none."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Create or replace an object atomically."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create an object unless one exists.

        True when this call created it, or when the object already holds exactly these bytes
        (a retried write of our own: writers put a run id in what they write, so another
        writer's object never has identical bytes by accident).
        """

    @abstractmethod
    def list_info(self, prefix: str) -> list[ObjectInfo]:
        """Every object under ``prefix`` (recursively), sorted by key."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; no error if it is already gone."""

    def exists(self, key: str) -> bool:
        try:
            self.get(key)
        except NotFound:
            return False
        return True

    def list(self, prefix: str) -> list[str]:
        """Keys of every object under ``prefix``, sorted."""
        return [info.key for info in self.list_info(prefix)]

    def upload_file(self, key: str, path: Path) -> None:
        """Store a local file (large files: adapters stream instead of reading it whole)."""
        self.put(key, Path(path).read_bytes())

    def move_file(self, key: str, path: Path) -> None:
        """Store a local file that the caller gives up: ``path`` is gone afterwards.

        Adapters may take the file itself instead of a copy (a rename on the same disk).
        """
        self.upload_file(key, path)
        Path(path).unlink(missing_ok=True)

    def download_file(self, key: str, path: Path) -> None:
        """Copy an object to a local file, atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, self.get(key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    return key


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class LocalStore(ObjectStore):
    """A folder on a local disk: the embedded default (``./lakehouse``)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise LakeError(f"lake {self.root} is a file, not a folder: choose another --lake")

    def path(self, key: str) -> Path:
        """The file behind a key (the local adapter only)."""
        return self.root / _check_key(key)

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no object {key!r} in lake {self.uri}") from None

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, path)  # atomic, and fails if the name exists
            return True
        except FileExistsError:
            return path.read_bytes() == data  # same rule as S3: identical bytes were ours
        finally:
            Path(tmp).unlink(missing_ok=True)

    def list_info(self, prefix: str) -> list[ObjectInfo]:
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.startswith(".") and name.endswith(".tmp"):
                    continue  # a write in progress
                full = Path(dirpath) / name
                st = full.stat()
                key = full.relative_to(self.root).as_posix()
                out.append(ObjectInfo(key, st.st_size, f"{st.st_mtime_ns}-{st.st_size}"))
        out.sort(key=lambda i: i.key)
        return out

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def upload_file(self, key: str, path: Path) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        os.close(fd)
        try:
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def move_file(self, key: str, path: Path) -> None:
        # A rename when the file is on the lake's disk: a million people's mart is 0.9 GB, which
        # took 3.3 s to copy and sync; the rename takes none of that. The file is synced first,
        # so the object is as durable as a copied one.
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
            same_disk = os.fstat(fh.fileno()).st_dev == dest.parent.stat().st_dev
        if not same_disk:
            super().move_file(key, path)
            return
        os.replace(path, dest)


class S3Store(ObjectStore):
    """Any S3-compatible endpoint (AWS, MinIO, Ceph) through boto3.

    Credentials and endpoint come from boto3's standard chain (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, profiles, instance roles), as every AWS tool does.
    """

    def __init__(self, bucket: str, prefix: str = "", client=None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        if client is None:
            config = Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"max_attempts": 4, "mode": "standard"},
            )
            client = boto3.session.Session().client("s3", config=config)
        self.client = client
        self._checked = False

    # -- helpers ---------------------------------------------------------------------------
    def _k(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _unk(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except NoCredentialsError:
            raise LakeError(
                f"no S3 credentials for {self.uri}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
            ) from None
        except EndpointConnectionError as exc:
            raise TransientLakeError(
                f"cannot reach the S3 endpoint for {self.uri} ({exc}): check AWS_ENDPOINT_URL "
                "and that the object store is running"
            ) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"no object {kwargs.get('Key')!r} in lake {self.uri}") from None
            if code == "NoSuchBucket":
                raise LakeError(
                    f"bucket {self.bucket!r} does not exist at the S3 endpoint: create it "
                    "(e.g. `aws s3 mb`) or fix --lake / FUSIONLAKE_LAKE"
                ) from None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                raise LakeError(
                    f"S3 refused {what} on {self.uri} ({code}): check AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY or AWS_PROFILE and the bucket policy"
                ) from None
            if is_transient(exc):
                raise TransientLakeError(f"S3 {what} on {self.uri} failed ({code or exc}); "
                                         "it may pass: retry") from exc
            raise

    # -- interface -------------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        resp = self._call("GetObject", self.client.get_object, Key=self._k(key))
        return resp["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self._call("PutObject", self.client.put_object, Key=self._k(key), Body=data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call(
                "PutObject", self.client.put_object, Key=self._k(key), Body=data, IfNoneMatch="*"
            )
            return True
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code not in ("PreconditionFailed", "ConditionalRequestConflict") and status != 412:
                raise
        # 412: someone wrote this key first -- or our own first attempt did and its answer was
        # lost, so boto3 retried. Identical bytes mean it was us.
        try:
            return hashlib.sha256(self.get(key)).digest() == hashlib.sha256(data).digest()
        except NotFound:  # deleted in between: try once more
            return self.put_if_absent(key, data)

    def list_info(self, prefix: str) -> list[ObjectInfo]:
        full = self._k(prefix.strip("/")) + "/" if prefix.strip("/") else (
            self.prefix + "/" if self.prefix else ""
        )
        out: list[ObjectInfo] = []
        token = None
        while True:  # pages of 1,000 keys
            kwargs = {"Prefix": full}
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call("ListObjectsV2", self.client.list_objects_v2, **kwargs)
            for obj in resp.get("Contents", []):
                out.append(ObjectInfo(self._unk(obj["Key"]), obj["Size"], obj["ETag"].strip('"')))
            if not resp.get("IsTruncated"):
                break
            token = resp["NextContinuationToken"]
        out.sort(key=lambda i: i.key)
        return out

    def delete(self, key: str) -> None:
        self._call("DeleteObject", self.client.delete_object, Key=self._k(key))

    def upload_file(self, key: str, path: Path) -> None:
        # Multipart for large files; the object appears only when the upload completes.
        try:
            self.client.upload_file(str(path), self.bucket, self._k(key))
        except Exception as exc:  # S3UploadFailedError wraps ClientError
            raise LakeError(f"upload of {path} to {self.uri}/{key} failed: {exc}") from exc

    def download_file(self, key: str, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            self._call("HeadObject", self.client.head_object, Key=self._k(key))
            self.client.download_file(self.bucket, self._k(key), tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def open_store(uri: str | Path) -> ObjectStore:
    """The store behind a lake URI: ``s3://bucket/prefix`` or a local path."""
    text = str(uri)
    if text.startswith("s3://"):
        parsed = urlparse(text)
        if not parsed.netloc:
            raise LakeError(f"lake URI {text!r} names no bucket: use s3://bucket/prefix")
        return S3Store(parsed.netloc, parsed.path)
    if "://" in text and not text.startswith("file://"):
        raise LakeError(f"lake URI {text!r}: only local paths and s3://bucket/prefix are supported")
    return LocalStore(text.removeprefix("file://"))
