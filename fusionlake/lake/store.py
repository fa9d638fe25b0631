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
  they write, so that two writers never produce identical bytes by accident: ledger events carry
  the run id and the time, lease generations the run id, host and pid, pointers a writer id.

Storage failures that pass (5xx, SlowDown and other throttling, a dropped or closed connection,
a read timeout) are retried where they happen: botocore's standard retry mode retries each
request, and the store retries each whole operation (a GET with its body, a multipart upload)
with backoff on top, so that a run meets :class:`TransientLakeError` only after a minute of
failures. Messages never carry credentials (:func:`redact`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import random
import re
import socket
import tempfile
import time
import unicodedata
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import ClassVar, TypeVar
from urllib.parse import urlparse

from fusionlake.lake.faults import kill_point

__all__ = [
    "LakeError",
    "LocalStore",
    "NotFound",
    "ObjectInfo",
    "ObjectStore",
    "OutOfSpace",
    "PartialWrite",
    "S3Store",
    "TransientLakeError",
    "causes",
    "first_line",
    "is_transient",
    "join_key",
    "no_space",
    "open_store",
    "out_of_space",
    "redact",
    "retrying",
    "safe_part",
]

T = TypeVar("T")
U = TypeVar("U")


class LakeError(Exception):
    """A storage problem a person can act on; the message says what and what to do."""


class TransientLakeError(LakeError):
    """A storage failure that may pass (5xx, throttling, a dropped connection, a timeout):
    worth retrying with backoff. Any other LakeError needs a person."""


class OutOfSpace(LakeError):
    """A disk this machine writes to is full (or over its quota): nothing wrong with the data,
    and waiting does not help; a person frees space. Raised by :func:`fusionlake.pipeline.run.run`
    with the free space of the lake's and the run's folders."""


#: What a full disk or quota looks like: an OSError's errno, or the text that Polars (Rust's
#: "os error 28"), DuckDB and shutil put in their own errors.
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_NO_SPACE = re.compile(r"no space left on device|disk quota exceeded|os error (28|122)\b",
                       re.IGNORECASE)


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then what caused it (or what it was raised while handling), in turn."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _no_space(exc: BaseException) -> str | None:
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS:
        return os.strerror(exc.errno)
    if found := _NO_SPACE.search(str(exc)[:100_000]):
        return {"28": os.strerror(errno.ENOSPC), "122": os.strerror(errno.EDQUOT)}.get(
            found.group(1), found.group(0))
    return None


def no_space(exc: BaseException | None) -> str | None:
    """What ``exc`` (or what caused it, or what it was raised while handling) says of a full
    disk or quota ("No space left on device", "Disk quota exceeded"), or None."""
    return next((why for e in causes(exc) if (why := _no_space(e))), None)


def out_of_space(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it, or what it was raised while handling) is a full
    disk or quota."""
    return isinstance(exc, OutOfSpace) or no_space(exc) is not None


#: S3 error codes that say "try again later", whatever the HTTP status.
TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
    "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "TooManyRequests",
})  # fmt: skip


#: What Polars' S3 reader (S3Store.scan_source) says when a request failed past its retries for
#: a reason that may pass: a 5xx or 429 answer, no answer, a timeout. (A 403 or a 404 is not.)
_PASSING_READ = re.compile(r"^object-store error: .*(status code: (5\d\d|429)|error sending "
                           r"request|timed out|connection (reset|closed|refused))",
                           re.DOTALL | re.IGNORECASE)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a storage failure that may pass: the one retry
    rule of every stage."""
    from botocore.exceptions import ClientError, HTTPClientError, IncompleteReadError
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from urllib3.exceptions import HTTPError as Urllib3Error

    for cause in causes(exc):
        # closed, reset or timed-out connections, an unreachable endpoint, a body cut short
        if isinstance(cause, TransientLakeError | ConnectionError | TimeoutError
                      | BotoConnectionError | HTTPClientError | IncompleteReadError
                      | Urllib3Error):
            return True
        if isinstance(cause, ClientError):
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            code = cause.response.get("Error", {}).get("Code", "")
            return status >= 500 or status == 429 or code in TRANSIENT_CODES
        if isinstance(cause, OSError) and _PASSING_READ.search(str(cause)):
            return True
    return False


#: How many objects a reader fetches side by side (a ledger's events, a run's small staged
#: files): on S3 each is a round trip, and one after the other they add up.
FETCHES_AT_ONCE = 16


def side_by_side(fn: Callable[[U], T], items: Sequence[U]) -> list[T]:
    """``[fn(item) for item in items]``, :data:`FETCHES_AT_ONCE` at a time, in order. The
    first exception is raised once the calls under way have ended; the rest are not made."""
    if len(items) <= 1:
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(min(FETCHES_AT_ONCE, len(items)), thread_name_prefix="fetch")
    try:
        return list(pool.map(fn, items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


#: How often the store tries a whole operation that fails transiently, on top of botocore's
#: retries of each request; the backoff starts at 0.2 s and doubles to at most 5 s.
STORE_ATTEMPTS = 6
_BACKOFF_FIRST, _BACKOFF_MAX = 0.2, 5.0


def retrying(fn: Callable[[], T], what: str, attempts: int = STORE_ATTEMPTS,
             transient: Callable[[BaseException], bool] = is_transient) -> T:
    """``fn()``, called again with jittered exponential backoff while it fails transiently.

    After ``attempts`` transient failures the last one is raised as a
    :class:`TransientLakeError` naming ``what`` (Prefect's retry policy may still try the
    whole stage again); any other error is raised at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if not transient(exc):
                raise
            if attempt == attempts:
                if isinstance(exc, TransientLakeError):
                    raise
                raise TransientLakeError(
                    f"{what} failed {attempts} times ({redact(_describe(exc))}); the object "
                    "store may be overloaded or unreachable: the run can be retried") from exc
            delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (attempt - 1))
            time.sleep(delay * (0.5 + random.random() / 2))
    raise AssertionError("unreachable")


def _describe(exc: BaseException) -> str:
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{err.get('Code') or status}: {err.get('Message') or ''}".strip(": ")
    return f"{type(exc).__name__}: {exc}"


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` without credentials: ``http://user:secret@host`` becomes ``http://***@host``,
    and the values of AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN are masked wherever they
    appear (an endpoint URL echoed by botocore, a config dump)."""
    text = _USERINFO.sub(r"\g<scheme>***@", str(text))
    for var in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        secret = os.environ.get(var)
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def first_line(exc: BaseException) -> str:
    """The first line of an error's message, or its type's name when it has none: what a
    one-line report of it says (before :func:`redact`)."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


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
    modified: float | None = None  # when it was last written (Unix time), where the store says


@dataclass(frozen=True)
class PartialWrite:
    """A write that started and has not finished: in progress, or left by a crashed process.

    On disk a temporary file beside its destination (``key`` is the temp file's own key); on S3
    an incomplete multipart upload (``key`` is the object it would create). Listings never
    show them; :meth:`ObjectStore.partial_writes` does, so that a clean start can remove those
    older than any write in progress could be. ``age`` is the seconds since it started by the
    store's own clock (see :meth:`ObjectStore.get_aged`).
    """

    key: str
    age: float
    upload_id: str | None = None


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
    # at most 200 characters and 255 bytes (a file name's limit on every common file system)
    return _cut_bytes(cleaned[:200], NAME_MAX)


#: The longest file name common file systems take, in bytes (UTF-8 Thai takes 3 a character).
NAME_MAX = 255
#: Suffix of every temporary file the local store writes (a write in progress or abandoned).
TEMP_SUFFIX = ".tmp"


def _cut_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode(errors="ignore")


def host_tag() -> str:
    """Six hex digits naming this machine in temp file names (pids are per machine)."""
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def _temp_prefix(name: str) -> str:
    """The prefix of a temporary file written beside ``name``: ``.<name>.<host>-<pid>.``, the
    name cut so that the whole, mkstemp's 8 random characters and ``.tmp`` stay within
    NAME_MAX bytes. The host and pid say whose it is, so a clean start can remove those of
    dead processes at once (fusionlake.pipeline.run.clean_start)."""
    owner = f".{host_tag()}-{os.getpid()}."
    return f".{_cut_bytes(name, NAME_MAX - 1 - len(owner) - 8 - len(TEMP_SUFFIX))}{owner}"


_TEMP_OWNER = re.compile(r"\.([0-9a-f]{6})-(\d+)\.[^./]{8}" + re.escape(TEMP_SUFFIX) + "$")


def temp_owner(key: str) -> tuple[str, int] | None:
    """(host tag, pid) of the process that wrote a local temp file, from its name."""
    m = _TEMP_OWNER.search(key)
    return (m.group(1), int(m.group(2))) if m else None


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
    def get_aged(self, key: str) -> tuple[bytes, float]:
        """The object's bytes and its age: the seconds since it was last written, as the store's
        own clock tells both times. Hosts whose clocks disagree judge an object's age alike
        (the lease: fusionlake.lake.lease). :class:`NotFound` if there is none."""

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

    def copy(self, source: str, key: str) -> None:
        """Store a copy of the object ``source`` under ``key`` (adapters copy inside the store:
        nothing passes through this process); :class:`NotFound` if there is none."""
        self.put(key, self.get(source))

    def download_file(self, key: str, path: Path, size: int | None = None) -> None:
        """Copy an object to a local file, atomically (``size``, where a listing gave it, lets
        an adapter pick how to fetch it)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # not synced: a download is a copy for a reader, fetched again if it is lost (a run
        # fetches every small staged file of the lake this way)
        _atomic_write(path, self.get(key), sync=False)

    def scan_source(self, key: str, size: int | None = None) -> tuple[str, dict] | None:
        """Where Polars can read the object ``key`` in place, with the keyword arguments its
        scan needs; None when the object is better downloaded to be read (``size``, where a
        listing gave it, lets an adapter fetch a small object whole)."""
        return None

    def partial_writes(self, prefix: str = "") -> list[PartialWrite]:
        """Writes under ``prefix`` that started and did not finish (see :class:`PartialWrite`)."""
        return []

    def discard_partial(self, partial: PartialWrite) -> None:
        """Remove what a partial write left (a temp file; an incomplete multipart upload)."""
        raise NotImplementedError(f"{type(self).__name__} lists no partial writes")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def _check_key(key: str) -> str:
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    return key


def _mkstemp(path: Path) -> tuple[int, str]:
    """A temporary file beside ``path`` (same disk, so the final rename is atomic)."""
    return tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=TEMP_SUFFIX)


def _write_temp(path: Path, data: bytes, key: str = "", sync: bool = True) -> str:
    """``data`` in a temporary file beside ``path``, synced to the disk unless ``sync`` is
    False; its name (removed on failure)."""
    fd, tmp = _mkstemp(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())
        kill_point("temp-written", key)  # crash tests: a temp file left behind
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _atomic_write(path: Path, data: bytes, key: str = "", sync: bool = True) -> None:
    tmp = _write_temp(path, data, key, sync)
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX)


class LocalStore(ObjectStore):
    """A folder on a local disk: the embedded default (``./lakehouse``)."""

    #: Characters a lake's folder may not have in its path: DuckDB and Polars read ``*``,
    #: ``?`` and ``[`` in a file path as a pattern, and DuckDB a ``?`` in a database's path as
    #: the start of its options, so such a lake would stage but fail later, at the marts.
    PATTERN_CHARACTERS = "*?[]"

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self.uri = str(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise LakeError(f"lake {self.root} is a file, not a folder: choose another --lake")
        found = sorted({c for c in str(self.root) if c in self.PATTERN_CHARACTERS})
        if found:
            raise LakeError(f"lake {self.root} has {' '.join(found)} in its path, which DuckDB "
                            "and Polars read as patterns: choose a folder without * ? [ ]")

    def path(self, key: str) -> Path:
        """The file behind a key (the local adapter only)."""
        return self.root / _check_key(key)

    #: Mode of the folders the store makes inside the lake: only the lake's own user lists
    #: them (the files are 0600 already, but a listing of ``raw/cn_mps/fraud_reports/`` told
    #: any local user which drops an agency sent, when, and how large). The published marts'
    #: folders are opened to the lake's group afterwards (pipeline.marts._share_with_group).
    FOLDER_MODE = 0o700

    def _folders_for(self, path: Path) -> None:
        """Make the missing folders above ``path`` inside the lake, each FOLDER_MODE (the
        lake's own folder as any other: it is the way to the marts)."""
        if path.parent.is_dir():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        missing, folder = [], path.parent
        while folder != self.root and not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):  # a concurrent writer made it first
                folder.mkdir(mode=self.FOLDER_MODE)

    def scan_source(self, key: str, size: int | None = None) -> tuple[str, dict]:
        return str(self.path(key)), {}

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no object {key!r} in lake {self.uri}") from None

    def get_aged(self, key: str) -> tuple[bytes, float]:
        path = self.path(key)
        try:
            data, written = path.read_bytes(), path.stat().st_mtime
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"no object {key!r} in lake {self.uri}") from None
        return data, self._now() - written

    def _now(self) -> float:
        """Now by the clock that stamps the lake's files: the modification time of a file made
        in the lake's folder and removed at once (never in landing/, which the pipeline only
        reads). On a local disk that is this host's clock; a lake on a network share is
        stamped by its file server, whichever host looks. Where no file can be made there (a
        lake mounted read-only), this host's clock."""
        try:
            fd, tmp = _mkstemp(self.root / "clock")
        except OSError:
            return time.time()
        try:
            return os.fstat(fd).st_mtime
        finally:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)

    def put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        self._folders_for(path)
        _atomic_write(path, data, key)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        path = self.path(key)
        self._folders_for(path)
        tmp = _write_temp(path, data, key)
        try:
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
                if _is_temp(name):
                    continue  # a write in progress (or abandoned: partial_writes)
                full = Path(dirpath) / name
                st = full.stat()
                key = full.relative_to(self.root).as_posix()
                out.append(ObjectInfo(key, st.st_size, f"{st.st_mtime_ns}-{st.st_size}",
                                      st.st_mtime_ns / 1e9))
        out.sort(key=lambda i: i.key)
        return out

    def delete(self, key: str) -> None:
        """Remove the file, and the folders it leaves empty: retention removes a version's
        files one by one, and a lake run every 15 minutes left 20,000 empty folders a month,
        each listed by every run that walks its zone (found by a soak of 40 scheduled runs)."""
        path = self.path(key)
        path.unlink(missing_ok=True)
        self._remove_empty_folders(path)

    def _remove_empty_folders(self, path: Path) -> None:
        """The folders above ``path`` that are empty now, up to the lake's root."""
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (or gone): the folders above it are not either
                break

    def partial_writes(self, prefix: str = "") -> list[PartialWrite]:
        base = self.root / prefix.strip("/") if prefix.strip("/") else self.root
        out = []
        now = None
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if not _is_temp(name):
                    continue
                full = Path(dirpath) / name
                try:
                    started = full.stat().st_mtime
                except FileNotFoundError:  # finished or removed meanwhile
                    continue
                now = self._now() if now is None else now
                out.append(PartialWrite(full.relative_to(self.root).as_posix(), now - started))
        return sorted(out, key=lambda p: p.key)

    def discard_partial(self, partial: PartialWrite) -> None:
        path = self.path(partial.key)
        path.unlink(missing_ok=True)
        self._remove_empty_folders(path)  # the folders a crashed write created

    def upload_file(self, key: str, path: Path) -> None:
        dest = self.path(key)
        self._folders_for(dest)
        fd, tmp = _mkstemp(dest)
        os.close(fd)
        try:
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            kill_point("temp-written", key)  # crash tests: a temp file left behind
            os.replace(tmp, dest)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def copy(self, source: str, key: str) -> None:
        # Objects are never changed in place (every write is a new file renamed over the key),
        # so a hard link is a copy that costs nothing: deleting either name leaves the other.
        src, dest = self.path(source), self.path(key)
        self._folders_for(dest)
        tmp = dest.with_name(f"{_temp_prefix(dest.name)}{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")
        try:
            os.link(src, tmp)
        except FileNotFoundError:
            raise NotFound(f"no object {source!r} in lake {self.uri}") from None
        except OSError:  # a file system without hard links
            super().copy(source, key)
            return
        try:
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)

    def move_file(self, key: str, path: Path) -> None:
        # A rename when the file is on the lake's disk: a large mart costs seconds to copy and
        # sync, a rename nothing. The file is synced first, so the object is as durable as a
        # copied one.
        dest = self.path(key)
        self._folders_for(dest)
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
            same_disk = os.fstat(fh.fileno()).st_dev == dest.parent.stat().st_dev
        if not same_disk:
            super().move_file(key, path)
            return
        os.replace(path, dest)


def _server_age(resp: dict, then: datetime) -> float:
    """Seconds from ``then`` (a time the server stamped) to the server's ``Date`` on the
    response ``resp``: both by the server's clock, whatever this host's says. Both are whole
    seconds, so the age is within a second of the truth. A response without a Date (none
    that S3, MinIO or Ceph send) is judged by this host's clock."""
    date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        now = parsedate_to_datetime(date) if date else datetime.now(UTC)
    except (TypeError, ValueError):
        now = datetime.now(UTC)
    return (now - then).total_seconds()


class S3Store(ObjectStore):
    """Any S3-compatible endpoint (AWS, MinIO, Ceph) through boto3.

    Credentials and endpoint come from boto3's standard chain (``AWS_ENDPOINT_URL``,
    ``AWS_ACCESS_KEY_ID``, profiles, instance roles), as every AWS tool does.

    Each request is retried by botocore (standard mode, :data:`BOTO_ATTEMPTS` attempts); each
    operation as a whole by the store (:func:`retrying`), because botocore gives up when its
    retry quota runs dry under a long burst of errors, and a multipart upload or a body read
    can fail past botocore's own retries.
    """

    #: botocore's attempts per request (standard mode: 5xx, throttling, dropped connections;
    #: backoff up to 1, 2, 4, 8 s between them).
    BOTO_ATTEMPTS = 6

    def __init__(self, bucket: str, prefix: str = "", client=None, attempts: int = STORE_ATTEMPTS):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.attempts = attempts
        if client is None:
            config = Config(
                connect_timeout=5,
                # room for the fetches made side by side (FETCHES_AT_ONCE) and a transfer's own
                # threads: a full pool discards connections, and a new one costs a TLS handshake
                max_pool_connections=2 * FETCHES_AT_ONCE,
                read_timeout=60,
                retries={"max_attempts": self.BOTO_ATTEMPTS, "mode": "standard"},
            )
            client = boto3.session.Session().client("s3", config=config)
        self.client = client

    # -- helpers ---------------------------------------------------------------------------
    def _k(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _unk(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _call(self, what: str, fn, key: str | None = None, **kwargs):
        """``fn(Bucket=..., **kwargs)``, retried while it fails transiently; errors a person
        can act on become :class:`LakeError` with what to do."""
        return self._op(what, lambda: fn(Bucket=self.bucket, **kwargs), key)

    def _op(self, what: str, fn: Callable[[], T], key: str | None = None) -> T:
        """``fn()`` (one S3 operation, however many requests), retried and its errors
        translated. A 412 (PreconditionFailed) comes through as the ClientError it is."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        def transient(exc: BaseException) -> bool:
            # nothing listening at all: botocore has tried BOTO_ATTEMPTS times already, and a
            # wrong AWS_ENDPOINT_URL should be said within seconds, not minutes
            return is_transient(exc) and not isinstance(exc, EndpointConnectionError)

        try:
            return retrying(fn, f"S3 {what} on {self.uri}" + (f"/{key}" if key else ""),
                            self.attempts, transient)
        except NoCredentialsError:
            raise LakeError(
                f"no S3 credentials for {self.uri}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
            ) from None
        except EndpointConnectionError as exc:
            raise TransientLakeError(redact(
                f"cannot reach the S3 endpoint for {self.uri} ({exc}): check AWS_ENDPOINT_URL "
                "and that the object store is running")) from None
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFound(f"no object {key!r} in lake {self.uri}") from None
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
            raise

    # -- interface -------------------------------------------------------------------------
    def get(self, key: str) -> bytes:
        return self.get_aged(key)[0]

    def get_aged(self, key: str) -> tuple[bytes, float]:
        full = self._k(key)

        def get_and_read() -> tuple[bytes, float]:  # the body is read inside the retry: it
            resp = self.client.get_object(Bucket=self.bucket, Key=full)  # can be cut short
            return resp["Body"].read(), _server_age(resp, resp["LastModified"])

        return self._op("GetObject", get_and_read, key)

    def put(self, key: str, data: bytes) -> None:
        self._call("PutObject", self.client.put_object, key, Key=self._k(key), Body=data)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        for _attempt in range(10):
            try:
                self._call("PutObject", self.client.put_object, key, Key=self._k(key),
                           Body=data, IfNoneMatch="*")
                return True
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if code == "ConditionalRequestConflict" or status == 409:
                    # another conditional write to this key is in flight: ask again
                    time.sleep(0.05 + random.random() / 10)
                    continue
                if code != "PreconditionFailed" and status != 412:
                    raise
            # 412: someone wrote this key first -- or our own first attempt did and its answer
            # was lost (a dropped connection after S3 acted), so the request was retried.
            # Identical bytes mean it was us: writers put their run id in what they write.
            try:
                return hashlib.sha256(self.get(key)).digest() == hashlib.sha256(data).digest()
            except NotFound:  # deleted in between: try again
                continue
        raise TransientLakeError(f"conditional write of {self.uri}/{key} kept conflicting with "
                                 "other writers; it may pass: retry")

    def list_info(self, prefix: str) -> list[ObjectInfo]:
        full = self._k(prefix.strip("/")) + "/" if prefix.strip("/") else (
            self.prefix + "/" if self.prefix else ""
        )
        out: list[ObjectInfo] = []
        token = None
        while True:  # pages of 1,000 keys, each retried on its own
            kwargs = {"Prefix": full}
            if token:
                kwargs["ContinuationToken"] = token
            resp = self._call("ListObjectsV2", self.client.list_objects_v2, prefix, **kwargs)
            for obj in resp.get("Contents", []):
                modified = obj.get("LastModified")
                out.append(ObjectInfo(self._unk(obj["Key"]), obj["Size"], obj["ETag"].strip('"'),
                                      modified.timestamp() if modified else None))
            if not resp.get("IsTruncated"):
                break
            token = resp["NextContinuationToken"]
        out.sort(key=lambda i: i.key)
        return out

    def delete(self, key: str) -> None:
        self._call("DeleteObject", self.client.delete_object, key, Key=self._k(key))

    def partial_writes(self, prefix: str = "") -> list[PartialWrite]:
        full = self._k(prefix.strip("/")) + "/" if prefix.strip("/") else (
            self.prefix + "/" if self.prefix else ""
        )
        out: list[PartialWrite] = []
        marker: dict = {}
        while True:
            resp = self._call("ListMultipartUploads", self.client.list_multipart_uploads,
                              prefix, Prefix=full, **marker)
            for up in resp.get("Uploads", []):
                out.append(PartialWrite(self._unk(up["Key"]), _server_age(resp, up["Initiated"]),
                                        up["UploadId"]))
            if not resp.get("IsTruncated"):
                break
            marker = {"KeyMarker": resp["NextKeyMarker"],
                      "UploadIdMarker": resp["NextUploadIdMarker"]}
        return sorted(out, key=lambda p: p.key)

    def discard_partial(self, partial: PartialWrite) -> None:
        from botocore.exceptions import ClientError

        try:
            self._call("AbortMultipartUpload", self.client.abort_multipart_upload, partial.key,
                       Key=self._k(partial.key), UploadId=partial.upload_id)
        except ClientError as exc:  # completed or aborted meanwhile
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

    def upload_file(self, key: str, path: Path) -> None:
        # Multipart for large files; the object appears only when the upload completes. The
        # whole upload is tried again when it fails transiently -- also when only the answer
        # to CompleteMultipartUpload was lost: its retry meets NoSuchUpload, and uploading the
        # same file again under the same key is idempotent.
        def transient(exc: BaseException) -> bool:
            return is_transient(exc) or "NoSuchUpload" in str(exc)

        def upload() -> None:
            self.client.upload_file(str(path), self.bucket, self._k(key))

        try:
            retrying(upload, f"upload of {path} to {self.uri}/{key}", self.attempts, transient)
        except TransientLakeError:
            raise
        except Exception as exc:  # S3UploadFailedError wraps ClientError
            raise LakeError(redact(f"upload of {path} to {self.uri}/{key} failed: {exc}")) from exc

    def copy(self, source: str, key: str) -> None:
        # server side (CopyObject; multipart copy above the transfer threshold): the bytes
        # never leave the store
        self._op("CopyObject", lambda: self.client.copy(
            {"Bucket": self.bucket, "Key": self._k(source)}, self.bucket, self._k(key)), source)

    #: How Polars' S3 reader retries each request when it reads an object in place
    #: (:meth:`scan_source`): 10 times, backing off from 0.2 s to at most 8 s, for at most
    #: two minutes, as botocore and the store do together for the store's own requests.
    SCAN_RETRIES: ClassVar[dict[str, int]] = {"max_retries": 10, "retry_init_backoff_ms": 200,
                                               "retry_max_backoff_ms": 8000,
                                               "retry_timeout_ms": 120_000}

    #: Objects smaller than this are fetched whole, with one GET, rather than read in place:
    #: in place, every query over a file fetches its footer and then its columns again, a round
    #: trip each, and a run queries the staged tables a dozen times or more (an incremental run
    #: over a 20-row drop made 494 range GETs of 36 staged files, a few KiB each). A round trip
    #: to S3 costs about as long as a few MiB take to arrive, so below this size one GET is
    #: cheaper than even one query's reads.
    SMALL_OBJECT: ClassVar[int] = 4 * 2**20

    def scan_source(self, key: str, size: int | None = None) -> tuple[str, dict] | None:
        """The object's ``s3://`` URL for Polars' own S3 reader, which fetches only the byte
        ranges a query needs (the footer, then the columns it selects) instead of the file.

        It talks to the endpoint and region of this store's client, with credentials from
        boto3's standard chain (asked again every few minutes, so that expiring ones are
        renewed), and retries each request (:data:`SCAN_RETRIES`).

        None (download instead) when the object is smaller than :data:`SMALL_OBJECT` (by
        ``size``, its listed size), or when boto3 trusts the endpoint through a CA bundle other
        than the system's (``AWS_CA_BUNDLE``, ``ca_bundle`` in the AWS config: a private CA,
        common on closed networks): Polars' reader does not read that setting.
        """
        if (size is not None and size < self.SMALL_OBJECT) or _boto_ca_bundle():
            return None
        return f"s3://{self.bucket}/{self._k(key)}", self._scan_options

    @functools.cached_property
    def _scan_options(self) -> dict:
        meta = self.client.meta
        options: dict = {"aws_region": meta.region_name or "us-east-1", **self.SCAN_RETRIES}
        endpoint = meta.endpoint_url or ""
        host = urlparse(endpoint).hostname or ""
        if host and not host.endswith(".amazonaws.com"):  # MinIO, Ceph, moto: path-style
            options["aws_endpoint_url"] = endpoint
            if endpoint.startswith("http://"):
                options["aws_allow_http"] = "true"
        return {"storage_options": options, "credential_provider": _boto_credentials}

    def download_file(self, key: str, path: Path, size: int | None = None) -> None:
        if size is not None and size < self.SMALL_OBJECT:  # one GET, not a HEAD and a transfer
            super().download_file(key, path)
            return
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _mkstemp(path)
        os.close(fd)
        try:
            self._call("HeadObject", self.client.head_object, key, Key=self._k(key))
            self._op("download", lambda: self.client.download_file(
                self.bucket, self._k(key), tmp), key)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


@functools.cache
def _boto_session():
    import boto3

    return boto3.session.Session()


def _boto_ca_bundle() -> str | None:
    """The CA bundle boto3 verifies endpoints with (env or AWS config), when it is not the
    system's own (which Polars' reader trusts too)."""
    import ssl

    bundle = (os.environ.get("AWS_CA_BUNDLE")
              or _boto_session()._session.get_scoped_config().get("ca_bundle"))
    defaults = ssl.get_default_verify_paths()
    system = {os.path.realpath(p) for p in (defaults.cafile, defaults.openssl_cafile) if p}
    return bundle if bundle and os.path.realpath(bundle) not in system else None


def _boto_credentials() -> tuple[dict[str, str], int]:
    """Credentials for Polars' S3 reader from boto3's standard chain, the one the store's own
    client uses; valid for Polars for five minutes, after which it asks again (one session per
    process: credentials that expire, an instance role's, are renewed by botocore)."""
    found = _boto_session().get_credentials()
    if found is None:
        raise LakeError("no AWS credentials for reading the lake: set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, a profile, or an instance role")
    frozen = found.get_frozen_credentials()
    credentials = {"aws_access_key_id": frozen.access_key,
                   "aws_secret_access_key": frozen.secret_key}
    if frozen.token:
        credentials["aws_session_token"] = frozen.token
    return credentials, int(time.time()) + 300


def open_store(uri: str | Path) -> ObjectStore:
    """The store behind a lake URI: ``s3://bucket/prefix`` or a local path."""
    text = str(uri)
    if text.startswith("s3://"):
        # split by hand: "?" and "#" are characters of an S3 key, not a query or a fragment
        bucket, _, prefix = text.removeprefix("s3://").partition("/")
        if not bucket:
            raise LakeError(f"lake URI {text!r} names no bucket: use s3://bucket/prefix")
        return S3Store(bucket, prefix)
    if "://" in text and not text.startswith("file://"):
        raise LakeError(f"lake URI {text!r}: only local paths and s3://bucket/prefix are supported")
    return LocalStore(text.removeprefix("file://"))
