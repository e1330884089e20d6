"""The data lake: the only module that reads or writes lake files.

Zones (see recomart_lake/README.md): raw (immutable landings + manifests), speed (Faust landings),
quarantine, curated and features (Delta tables), reports (PDF/HTML), serving (published
recommendations), lineage (OpenLineage events), state (run history, stage state), mlflow,
experiments (A/B definitions, attributed outcomes, readouts).

One ``Lake`` serves both backends: a local folder (the embedded default) or an object store
(``RECOMART_LAKE_ROOT=s3://bucket/prefix``), through fsspec (s3fs). fsspec was picked because
universal_pathlib gives one path object for both (a local root stays a plain ``pathlib.Path``;
an ``s3://`` root is a ``UPath``), pyarrow reads and writes parquet through any fsspec filesystem,
and MLflow, GX and pandas speak it too. Delta tables go through deltalake's own object-store
client with :attr:`Lake.storage_options` (conditional put, so concurrent writers are safe).

Every write is atomic, with the difference between backends inside this module only: locally a
file is written to a temporary name in the same folder, fsynced and renamed into place; on an
object store the whole object is sent in one PUT (there is no rename; an object becomes visible
only complete). Tables are Delta Lake commits. A crash therefore leaves either the old or the new
content. Callers never use builtin ``open``, ``os.replace``, ``shutil`` or ``Path.mkdir`` on lake
paths: they use the methods here (or ``read_bytes``/``exists``/``glob`` of the path object).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import pyarrow as pa
import pyarrow.parquet as pq

from recomart.config import get_settings, is_lake_uri
from recomart.errors import PermanentError, RecomartError, TransientError

if TYPE_CHECKING:
    # only annotations name pandas (pyarrow imports it when a frame is made): the serving
    # workers, which never build frames, skip its ~1-2 s import
    import pandas as pd
    from upath import UPath

    from recomart.config import Settings

ZONES = ("raw", "speed", "quarantine", "curated", "features", "reports", "serving", "lineage",
         "state", "mlflow", "experiments")

LakePath = Union[Path, "UPath"]
"""A path inside the lake: ``pathlib.Path`` for a local lake, ``upath.UPath`` for an object store.
Both have ``/``, ``name``, ``parent``, ``exists()``, ``is_dir()``, ``glob()``, ``read_bytes()``."""


class LakeError(RecomartError):
    """A lake read or write that cannot succeed (missing table, bad zone)."""


class LakeUnavailableError(LakeError, PermanentError):
    """The object store behind the lake cannot be used as configured (missing bucket, rejected
    credentials): a retry cannot help, the settings must change."""


class LakeUnreachableError(LakeError, TransientError):
    """The object store's endpoint did not answer (it may be starting)."""


def sha256_file(path: LakePath, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: Path, writer) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_arrow(data: pd.DataFrame | pa.Table) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    return pa.Table.from_pandas(data, preserve_index=False)


# ---- object-store settings ------------------------------------------------------------------------
def aws_values(settings: Settings) -> dict[str, str]:
    """The standard ``AWS_*`` settings that are set, secrets in plain text (unset ones are left to
    botocore's own chain): what both S3 clients below are configured from."""
    secret = {"AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key,
              "AWS_SESSION_TOKEN": settings.aws_session_token}
    plain = {"AWS_ACCESS_KEY_ID": settings.aws_access_key_id, "AWS_REGION": settings.aws_region,
             "AWS_ENDPOINT_URL": settings.aws_endpoint_url}
    out = {k: v.get_secret_value() for k, v in secret.items() if v}
    out.update({k: v for k, v in plain.items() if v})
    return out


_S3FS_NAMES = {"AWS_ACCESS_KEY_ID": "key", "AWS_SECRET_ACCESS_KEY": "secret",
               "AWS_SESSION_TOKEN": "token", "AWS_ENDPOINT_URL": "endpoint_url"}


def s3_fs_options(settings: Settings) -> dict[str, Any]:
    """s3fs options from the standard ``AWS_*`` settings."""
    aws = aws_values(settings)
    opts: dict[str, Any] = {"use_listings_cache": False}  # other processes write the same lake
    opts.update({_S3FS_NAMES[k]: v for k, v in aws.items() if k in _S3FS_NAMES})
    if "AWS_REGION" in aws:
        opts["client_kwargs"] = {"region_name": aws["AWS_REGION"]}
    return opts


def delta_storage_options(settings: Settings) -> dict[str, str]:
    """deltalake (object_store) options from the same settings (it takes the ``AWS_*`` names
    themselves), with the safe-concurrent-writes setting: ``conditional_put`` (``etag`` by
    default) makes two writers of one table version conflict instead of overwriting each other's
    commit."""
    opts = aws_values(settings)
    if opts.get("AWS_ENDPOINT_URL", "").startswith("http://"):
        opts["AWS_ALLOW_HTTP"] = "true"
    if settings.lake_s3_conditional_put:
        opts["conditional_put"] = settings.lake_s3_conditional_put
    return opts


_CHECKED: set[tuple[str, str | None, str | None]] = set()
_CHECK_LOCK = threading.Lock()


class Lake:
    """A lake rooted at one folder or ``s3://bucket/prefix``; cheap to construct, holds no open
    handles (the object-store client is created on first use and checked once per process)."""

    def __init__(self, root: Path | str | None = None, *, settings: Settings | None = None) -> None:
        self._settings = settings
        raw = root if root is not None else self.settings.lake_root
        if getattr(raw, "protocol", "") not in ("", "file", "local"):  # a UPath (another Lake's root)
            raw = f"{raw.protocol}://{raw.path}"
        if isinstance(raw, str) and is_lake_uri(raw):
            from upath import UPath

            self.is_local = False
            self.root: LakePath = UPath(raw.rstrip("/"), **s3_fs_options(self.settings))
        else:
            self.is_local = True
            self.root = Path(str(raw)) if not isinstance(raw, Path) else raw
        self._checked = self.is_local

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = get_settings()
        return self._settings

    def __repr__(self) -> str:
        return f"Lake({self.uri(self.root)!r})"

    # ---- paths -------------------------------------------------------------------------------
    def path(self, zone: str, *parts: str) -> LakePath:
        if zone not in ZONES:
            raise LakeError(f"unknown lake zone {zone!r}; zones are {', '.join(ZONES)}")
        self.check()
        return self.root.joinpath(zone, *parts)

    def resolve(self, rel: str | LakePath) -> LakePath:
        """The path of ``rel``: a lake-relative POSIX path (as manifests and JSON store them), or
        a full path / URI inside this lake (older JSON stored those)."""
        self.check()
        text = str(rel)
        root = self.uri(self.root).rstrip("/")
        if text == root or text.startswith(root + "/"):
            text = text[len(root) + 1:]
        elif self.is_local and Path(text).is_absolute():
            return Path(text)
        return self.root.joinpath(*[p for p in text.split("/") if p])

    def rel(self, path: LakePath) -> str:
        """``path`` relative to the root as a POSIX string (what manifests and XCom carry)."""
        root, full = self._key(self.root).rstrip("/"), self._key(path)
        if full == root:
            return ""
        if not full.startswith(root + "/"):
            raise LakeError(f"{path} is not inside lake {self.uri(self.root)}")
        return full[len(root) + 1:]

    def uri(self, path: LakePath) -> str:
        """What to show a user or hand a library: a local path, or ``s3://bucket/key``."""
        return str(path) if self.is_local else f"{path.protocol}://{path.path}"

    def _key(self, path: LakePath) -> str:
        """The filesystem's own name of ``path`` (local path / ``bucket/key``)."""
        if self.is_local:
            return Path(path).as_posix()
        return str(path.path) if hasattr(path, "path") else str(path).split("://", 1)[-1]

    @property
    def fs(self):
        """The fsspec filesystem of the lake (local or s3fs)."""
        if self.is_local:
            from fsspec.implementations.local import LocalFileSystem

            return LocalFileSystem()
        return self.root.fs

    def check(self) -> None:
        """Fail with what to fix when the bucket is missing or the store rejects the
        credentials; once per process and lake (local lakes need no check)."""
        if self._checked:
            return
        s = self.settings
        key = (self.uri(self.root), s.aws_endpoint_url, s.aws_access_key_id)
        with _CHECK_LOCK:
            if key in _CHECKED:
                self._checked = True
                return
            bucket = self.root.path.split("/", 1)[0]
            where = f" at {s.aws_endpoint_url}" if s.aws_endpoint_url else ""
            try:
                self.root.fs.info(bucket, refresh=True)  # one HEAD bucket
            except FileNotFoundError as exc:
                raise LakeUnavailableError(
                    f"lake {self.uri(self.root)}: bucket {bucket!r} does not exist{where}. Create "
                    f"it (e.g. `aws s3 mb s3://{bucket}`, or `mc mb` on MinIO) or point "
                    "RECOMART_LAKE_ROOT at an existing bucket.") from exc
            except PermissionError as exc:
                raise LakeUnavailableError(
                    f"lake {self.uri(self.root)}: the object store{where} refused access to bucket "
                    f"{bucket!r} ({exc}). Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and "
                    "AWS_REGION), and that they may list, read and write the bucket.") from exc
            except Exception as exc:  # botocore raises its own types for these
                name = type(exc).__name__
                if "Credential" in name:
                    raise LakeUnavailableError(
                        f"lake {self.uri(self.root)}: no credentials for the object store ({exc}). "
                        "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.") from exc
                if "Connect" in name or isinstance(exc, (ConnectionError, TimeoutError, OSError)):
                    raise LakeUnreachableError(
                        f"lake {self.uri(self.root)}: the object store{where or ''} did not answer "
                        f"({name}: {exc}). Is it running? Check AWS_ENDPOINT_URL.") from exc
                raise
            _CHECKED.add(key)
            self._checked = True

    # ---- files and folders -------------------------------------------------------------------
    def exists(self, path: LakePath) -> bool:
        return path.exists()

    def is_dir(self, path: LakePath) -> bool:
        return path.is_dir()

    def size(self, path: LakePath) -> int:
        return int(path.stat().st_size)

    def change_token(self, path: LakePath) -> str:
        """A value that changes whenever ``path`` is rewritten (inode, mtime and size locally, the
        ETag on an object store); raises FileNotFoundError when it is absent. Cheap: one stat /
        HEAD. Lake writes replace the file (a new inode), so two rewrites within one tick of a
        coarse file-system clock still differ; mtime alone would not. (Three same-size rewrites
        within one tick could still reuse the first inode: readers poll far less often.)"""
        if self.is_local:
            st = Path(path).stat()
            return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
        info = self.fs.info(self._key(path), refresh=True)
        return str(info.get("ETag") or info.get("LastModified") or info.get("size"))

    def glob(self, base: LakePath, pattern: str) -> list[LakePath]:
        """Sorted matches of ``pattern`` below ``base`` (empty when ``base`` does not exist)."""
        return sorted(base.glob(pattern), key=str) if base.is_dir() else []

    def iterdir(self, base: LakePath) -> list[LakePath]:
        """Sorted entries of folder ``base`` (empty when it does not exist)."""
        if not base.is_dir():
            return []
        own = self._key(base).rstrip("/")
        return sorted((p for p in base.iterdir() if self._key(p).rstrip("/") != own), key=str)

    def read_bytes(self, path: LakePath) -> bytes:
        return path.read_bytes()

    def read_many(self, paths: Sequence[LakePath]) -> list[bytes]:
        """The contents of many small files, in order (one concurrent batch on an object store)."""
        if not paths:
            return []
        if self.is_local:
            return [Path(p).read_bytes() for p in paths]
        keys = [self._key(p) for p in paths]
        got = self.fs.cat(keys)
        return [got[k] for k in keys]

    def read_text(self, path: LakePath) -> str:
        return path.read_bytes().decode("utf-8")

    def open(self, path: LakePath, mode: str = "rb"):
        """A binary file object for streaming reads; writes go through ``write_*`` (atomic)."""
        if mode not in ("rb", "r"):
            raise LakeError(f"lake files are opened for reading only (got mode {mode!r}); write "
                            "through Lake.write_bytes / write_parquet / copy_file")
        return path.open(mode) if mode == "rb" else path.open("r", encoding="utf-8")

    def write_bytes(self, path: LakePath, data: bytes) -> LakePath:
        """Atomically replace ``path`` with ``data`` (temp + fsync + rename, or one PUT)."""
        if self.is_local:
            return _atomic_write(Path(path), lambda fh: fh.write(data))
        self.fs.pipe_file(self._key(path), bytes(data))
        return path

    def copy_file(self, src: LakePath | str, dest: LakePath) -> LakePath:
        """Atomically copy a local file or a lake file to ``dest`` in the lake."""
        if self.is_local:
            def _copy(fh) -> None:
                with open(src, "rb") as s:
                    while block := s.read(1 << 20):
                        fh.write(block)
            return _atomic_write(Path(dest), _copy)
        if hasattr(src, "protocol") and getattr(src, "protocol", "") not in ("", "file", "local"):
            self.fs.copy(self._key(src), self._key(dest))  # server-side copy
        else:
            self.fs.put_file(str(src), self._key(dest))  # one PUT (multipart for big files)
        return dest

    def upload_tree(self, src_dir: Path | str, dest: LakePath) -> list[LakePath]:
        """Copy every file below local folder ``src_dir`` to ``dest`` (for tools that can only
        write local folders: GX Data Docs, OpenLineage files); each file atomically."""
        src_dir, out = Path(src_dir), []
        for f in sorted(p for p in src_dir.rglob("*") if p.is_file()):
            target = dest.joinpath(*f.relative_to(src_dir).parts)
            out.append(self.copy_file(f, target))
        return out

    @contextlib.contextmanager
    def build_tree(self, dest: LakePath) -> Iterator[Path]:
        """A local folder for a tool that writes a whole folder (GX Data Docs); when the block
        succeeds it replaces ``dest``: locally by renaming a sibling temp folder into place (as
        atomic as a folder can be), on an object store by uploading every file and then deleting
        the files of the old content that the new one does not have. A failure leaves ``dest``."""
        if self.is_local:
            dest = Path(dest)
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
            try:
                yield tmp
                if dest.exists():
                    shutil.rmtree(dest)
                os.replace(tmp, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return
        with tempfile.TemporaryDirectory(prefix="recomart-tree-") as tmp:
            yield Path(tmp)
            old = set(self.fs.find(self._key(dest))) if dest.exists() else set()
            new = {self._key(p) for p in self.upload_tree(Path(tmp), dest)}
            if stale := sorted(old - new):
                self.fs.rm(stale)

    def download(self, path: LakePath, dest: Path | str) -> Path:
        """Copy lake file ``path`` to the local file ``dest`` (for tools that need a local file)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if self.is_local:
            shutil.copyfile(path, dest)
        else:
            self.fs.get_file(self._key(path), str(dest))
        return dest

    @contextlib.contextmanager
    def local_copy(self, path: LakePath) -> Iterator[Path]:
        """A local file with the content of ``path``: the file itself for a local lake, else a
        temporary download removed afterwards."""
        if self.is_local:
            yield Path(path)
            return
        with tempfile.TemporaryDirectory(prefix="recomart-lake-") as tmp:
            yield self.download(path, Path(tmp) / path.name)

    def remove(self, path: LakePath) -> None:
        """Delete one file (no error when it is absent)."""
        if self.is_local:
            Path(path).unlink(missing_ok=True)
        elif path.exists():
            self.fs.rm_file(self._key(path))

    def remove_tree(self, path: LakePath) -> None:
        """Delete a folder and everything below it (no error when it is absent)."""
        if self.is_local:
            if Path(path).exists():
                shutil.rmtree(path)
        else:
            found = self.fs.find(self._key(path))
            if found:
                self.fs.rm(found)

    def makedirs(self, path: LakePath) -> LakePath:
        """Make folder ``path`` (local lakes; object stores have no folders)."""
        if self.is_local:
            Path(path).mkdir(parents=True, exist_ok=True)
        return path

    def fsync_dir(self, path: LakePath) -> None:
        """Make renames into folder ``path`` survive a power cut (local); a PUT that returned is
        already durable on an object store, so there it does nothing."""
        if not self.is_local:
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def write_text(self, path: LakePath, text: str) -> LakePath:
        return self.write_bytes(path, text.encode("utf-8"))

    def write_json(self, path: LakePath, obj: Any) -> LakePath:
        return self.write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    def read_json(self, path: LakePath, default: Any = None) -> Any:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if default is not None:
                return default
            raise LakeError(f"missing lake file {self.uri(path)}") from None
        return json.loads(data.decode("utf-8"))

    def read_json_or_none(self, path: LakePath) -> Any:
        """The JSON at ``path``, or None when it does not exist: one GET, where ``exists()`` then
        ``read_json`` costs two or three requests on an object store."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return json.loads(data.decode("utf-8"))

    def write_parquet(self, path: LakePath, data: pd.DataFrame | pa.Table) -> LakePath:
        table = to_arrow(data)
        if self.is_local:
            return _atomic_write(Path(path), lambda fh: pq.write_table(table, fh, compression="zstd"))
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        return self.write_bytes(path, sink.getvalue().to_pybytes())

    def _arrow_source(self, path: LakePath) -> tuple[str, Any]:
        return (str(path), None) if self.is_local else (self._key(path), self.fs)

    def read_arrow_file(self, path: LakePath, columns: Sequence[str] | None = None,
                        filters: Any = None) -> pa.Table:
        where, fs = self._arrow_source(path)
        return pq.read_table(where, columns=list(columns) if columns else None, filters=filters,
                             filesystem=fs)

    def read_parquet(self, path: LakePath, columns: Sequence[str] | None = None) -> pd.DataFrame:
        return self.read_arrow_file(path, columns).to_pandas()

    def read_parquet_schema(self, path: LakePath) -> pa.Schema:
        where, fs = self._arrow_source(path)
        return pq.read_schema(where, filesystem=fs)

    # ---- Delta tables ------------------------------------------------------------------------
    @property
    def storage_options(self) -> dict[str, str] | None:
        """deltalake ``storage_options`` (None for a local lake)."""
        return None if self.is_local else delta_storage_options(self.settings)

    def table_path(self, zone: str, name: str) -> LakePath:
        return self.path(zone, name)

    def table_uri(self, zone: str, name: str) -> str:
        """What deltalake opens: a local path or ``s3://bucket/key``."""
        return self.uri(self.table_path(zone, name))

    def table_exists(self, zone: str, name: str) -> bool:
        return (self.table_path(zone, name) / "_delta_log").is_dir()

    def _delta(self, zone: str, name: str, version: int | None = None):
        from deltalake import DeltaTable

        if not self.table_exists(zone, name):
            raise LakeError(f"no table {zone}/{name} in lake {self.uri(self.root)}")
        return DeltaTable(self.table_uri(zone, name), version=version,
                          storage_options=self.storage_options)

    def write_table(self, zone: str, name: str, data: pd.DataFrame | pa.Table, *,
                    mode: str = "overwrite", partition_by: Sequence[str] | None = None,
                    predicate: str | None = None, schema_mode: str | None = "overwrite",
                    metadata: dict[str, str] | None = None) -> int:
        """Commit ``data`` as one Delta version and return it.

        ``predicate`` with ``mode="overwrite"`` replaces only the matching rows (e.g. one logical
        date), which is what makes per-date tasks idempotent.
        """
        from deltalake import CommitProperties, write_deltalake

        path = self.table_path(zone, name)
        self.makedirs(path.parent)
        kwargs: dict[str, Any] = {"mode": mode}
        if partition_by:
            kwargs["partition_by"] = list(partition_by)
        if predicate:
            kwargs["predicate"] = predicate
        elif mode == "overwrite" and schema_mode:
            kwargs["schema_mode"] = schema_mode
        if metadata:
            kwargs["commit_properties"] = CommitProperties(custom_metadata=metadata)
        if self.storage_options:
            kwargs["storage_options"] = self.storage_options
        write_deltalake(self.uri(path), to_arrow(data), **kwargs)
        return self.table_version(zone, name)

    def merge_table(self, zone: str, name: str, data: pd.DataFrame | pa.Table, keys: Iterable[str],
                    *, update: bool = False, partition_by: Sequence[str] | None = None) -> int:
        """Insert rows whose ``keys`` are not in the table yet (and update matches if asked).

        Merging the same rows twice leaves the table unchanged: the idempotent sink for
        at-least-once delivery.
        """
        source = to_arrow(data)
        if not self.table_exists(zone, name):
            return self.write_table(zone, name, source, mode="overwrite", partition_by=partition_by)
        predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        merger = self._delta(zone, name).merge(source=source, predicate=predicate,
                                               source_alias="s", target_alias="t")
        if update:
            merger = merger.when_matched_update_all()
        merger.when_not_matched_insert_all().execute()
        return self.table_version(zone, name)

    def read_table(self, zone: str, name: str, *, version: int | None = None,
                   columns: Sequence[str] | None = None, filters: Any = None) -> pd.DataFrame:
        dt = self._delta(zone, name, version)
        table = dt.to_pyarrow_table(columns=list(columns) if columns else None, filters=filters)
        return table.to_pandas()

    def read_arrow(self, zone: str, name: str, *, version: int | None = None,
                   columns: Sequence[str] | None = None) -> pa.Table:
        return self._delta(zone, name, version).to_pyarrow_table(
            columns=list(columns) if columns else None)

    def table_version(self, zone: str, name: str) -> int:
        return int(self._delta(zone, name).version())

    def table_history(self, zone: str, name: str) -> list[dict[str, Any]]:
        """Commit infos, newest first, each with its ``version`` (what ``DeltaTable.history()``
        gives). Read from the ``_delta_log`` commit files in one concurrent fetch: delta-rs's own
        history lists with ``start-after``, which S3-compatible servers such as moto ignore, and
        then never finishes there."""
        if not self.table_exists(zone, name):
            raise LakeError(f"no table {zone}/{name} in lake {self.uri(self.root)}")
        log_dir = self._key(self.table_path(zone, name) / "_delta_log")
        names = [n for n in self.fs.ls(log_dir, detail=False)
                 if n.rsplit("/", 1)[-1].removesuffix(".json").isdigit() and n.endswith(".json")]
        blobs = self.fs.cat(names) if names else {}
        out = []
        for key, blob in blobs.items():
            version = int(key.rsplit("/", 1)[-1].removesuffix(".json"))
            actions = (json.loads(line) for line in blob.decode("utf-8").splitlines() if line)
            info = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
            out.append({**info, "version": version})
        return sorted(out, key=lambda h: -h["version"])

    def table_schema(self, zone: str, name: str, version: int | None = None) -> list[tuple[str, str]]:
        schema = pa.schema(self._delta(zone, name, version).schema().to_arrow())
        return [(f.name, str(f.type)) for f in schema]

    def table_stats(self, zone: str, name: str, version: int | None = None) -> dict[str, int]:
        """Version, rows, bytes and files of a table version, from the Delta log (no data read)."""
        dt = self._delta(zone, name, version)
        adds = pa.table(dt.get_add_actions(flatten=True))
        rows = adds["num_records"].to_pylist() if "num_records" in adds.column_names else []
        return {"version": int(dt.version()), "rows": int(sum(r or 0 for r in rows)),
                "bytes": int(sum(adds["size_bytes"].to_pylist())), "files": adds.num_rows}

    def list_tables(self, zone: str) -> list[str]:
        return [p.name for p in self.iterdir(self.path(zone)) if (p / "_delta_log").is_dir()]

