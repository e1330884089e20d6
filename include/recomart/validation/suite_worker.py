"""The GX suites in a child process, beside the Arrow work of the validating process.

Why: Great Expectations is pure Python. Importing it (~3 s, ~5 CPU s cold) and running its suites
hold the GIL, so a background thread gives no parallelism; a child process runs them on the second
core while this process parses, coerces and checks rows. It starts first thing in
:func:`recomart.validation.validate_all` (before pandas and Pandera are imported here), so its
import overlaps ours, and it runs each dataset's suites as soon as that dataset is validated.

Protocol: JSON lines on the child's stdin, ``begin`` (run settings and the local Data Docs folder),
one ``dataset`` per dataset (what the suites read, as Arrow IPC files in the child's temp folder:
see :mod:`recomart.validation.gx_input`), ``finish``. The child then builds the Data Docs, writes
``result.json`` (the checks per dataset) and exits 0. Its stdout and stderr go to ``worker.log``.

Failure: a child that crashes, is killed or raises exits without a result; the validation then
fails with :class:`SuiteWorkerError` carrying the child's exit status and the tail of its log, as
a GX exception failed it when the suites ran in-process (the summary is not written and nothing
is published: a re-run repeats the whole validation). The child never outlives the run: it runs in
its own process group, stopped (SIGTERM, then SIGKILL) when the run ends or fails, and if the
validating process itself dies the child reads EOF on its stdin and exits.

``InProcessSuites`` has the same interface and runs :func:`recomart.validation.suites.run_suites`
here (``validate_all(..., gx_in_process=True)``): for debugging and for the test that compares
both.

This module imports only the standard library at import time (it runs before pandas is loaded).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from recomart.errors import RecomartError
from recomart.processes import stop_group

if TYPE_CHECKING:
    import pandas as pd

    from recomart.validation.gx_input import GXInput

log = logging.getLogger(__name__)
WORKER_TIMEOUT_S = 900.0  # from `finish` to the child's exit; the suites read samples and one column
RESULT = "result.json"
LOG = "worker.log"
_LOG_TAIL = 4000


class SuiteWorkerError(RecomartError):
    """The GX child process failed, was killed, timed out or gave no result."""


class Suites(Protocol):
    """Where the GX suites run: fed ``begin``, one ``add`` per dataset, ``finish``; then ``checks``."""

    def begin(self, nullables: dict[str, frozenset[str]], previous_rows: dict[str, int],
              ds_end: pd.Timestamp, docs_dir: Path) -> None: ...

    def add(self, name: str, inp: GXInput) -> None: ...

    def finish(self) -> None: ...

    def checks(self) -> dict[str, list[dict]]: ...

    def close(self) -> None: ...


class InProcessSuites:
    """The suites in this process, after every dataset was added (GX imported by a thread meanwhile)."""

    def __init__(self) -> None:
        import deltalake  # noqa: F401 - imported here, before the GX prefetch thread imports anything

        from recomart.validation.suites import prefetch_gx

        prefetch_gx()
        self._run: tuple | None = None
        self._frames: dict[str, tuple[Any, Any]] = {}

    def begin(self, nullables, previous_rows, ds_end, docs_dir) -> None:
        self._run = (nullables, previous_rows, ds_end, docs_dir)

    def add(self, name: str, inp: GXInput) -> None:
        from recomart.validation.gx_input import gx_frames

        self._frames[name] = gx_frames(inp)

    def finish(self) -> None:
        pass

    def checks(self) -> dict[str, list[dict]]:
        from recomart.validation.suites import run_suites

        if self._run is None:
            raise SuiteWorkerError("GX suites: checks() before begin()")
        checks, _ = run_suites(self._frames, *self._run)
        self._frames.clear()
        return checks

    def close(self) -> None:
        self._frames.clear()

    def __enter__(self) -> InProcessSuites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _package_root() -> str:
    import recomart

    return str(Path(recomart.__file__).resolve().parents[1])


class ChildSuites:
    """The suites in a child process (see the module docstring); use as a context manager."""

    def __init__(self, timeout: float = WORKER_TIMEOUT_S) -> None:
        self.timeout = timeout
        self.work = Path(tempfile.mkdtemp(prefix="recomart-gx-"))
        (self.work / "tmp").mkdir()
        self.log_path = self.work / LOG
        self._finished = False
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
        env["TMPDIR"] = str(self.work / "tmp")  # GX's ephemeral docs folder goes with the work folder
        env.setdefault("GX_ANALYTICS_ENABLED", "false")
        try:
            if not sys.executable:
                raise OSError("sys.executable is empty")
            with open(self.log_path, "wb") as log_file:
                self.proc: subprocess.Popen | None = subprocess.Popen(
                    [sys.executable, "-m", __name__, str(self.work)], stdin=subprocess.PIPE,
                    stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        except OSError as exc:
            self.proc = None
            shutil.rmtree(self.work, ignore_errors=True)
            raise SuiteWorkerError(f"could not start the GX suites child process "
                                   f"({sys.executable!r} -m {__name__}): {exc}") from exc

    def _tail(self) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return text[-_LOG_TAIL:].strip()

    def _failed(self, what: str) -> SuiteWorkerError:
        rc = self.proc.poll() if self.proc else None
        status = ("still running" if rc is None
                  else f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}")
        tail = self._tail()
        return SuiteWorkerError(f"GX suites child process {what} ({status})"
                                + (f"; its output ends:\n{tail}" if tail else "; it wrote nothing"))

    def _send(self, msg: dict[str, Any]) -> None:
        if self.proc is None or self.proc.stdin is None or self._finished:
            raise SuiteWorkerError(f"GX suites: {msg['op']!r} sent after finish() or close()")
        if self.proc.poll() is not None:
            raise self._failed(f"exited before {msg['op']!r}")
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode("utf-8"))
            self.proc.stdin.flush()
        except OSError:  # BrokenPipeError: it exited meanwhile
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            raise self._failed(f"exited before {msg['op']!r}") from None

    def begin(self, nullables: dict[str, frozenset[str]], previous_rows: dict[str, int],
              ds_end: pd.Timestamp, docs_dir: Path) -> None:
        self._send({"op": "begin", "nullables": {n: sorted(c) for n, c in nullables.items()},
                    "previous_rows": previous_rows, "ds_end": ds_end.isoformat(),
                    "docs_dir": str(docs_dir)})

    def add(self, name: str, inp: GXInput) -> None:
        from recomart.validation.gx_input import write_input

        self._send({"op": "dataset", **write_input(inp, self.work, name)})

    def finish(self) -> None:
        self._send({"op": "finish"})
        self._finished = True
        with contextlib.suppress(OSError):
            self.proc.stdin.close()

    def checks(self) -> dict[str, list[dict]]:
        """Wait for the child (at most ``timeout`` seconds) and return its checks per dataset."""
        if self.proc is None or not self._finished:
            raise SuiteWorkerError("GX suites: checks() before finish()")
        t0 = time.perf_counter()
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            stop_group(self.proc, timeout=5)
            raise self._failed(f"gave no result within {self.timeout:.0f}s and was stopped") from None
        waited = time.perf_counter() - t0
        result = self.work / RESULT
        if self.proc.returncode != 0 or not result.exists():
            raise self._failed("failed")
        data = json.loads(result.read_text(encoding="utf-8"))
        log.info("GX suites child process done (waited %.2fs for it); its steps (s since start): %s",
                 waited, ", ".join(f"{k} {v:.2f}" for k, v in data.get("steps", {}).items()))
        if tail := self._tail():  # GX's own INFO lines are noise; its warnings are not
            level = logging.WARNING if "WARNING" in tail or "ERROR" in tail else logging.DEBUG
            log.log(level, "GX suites child process output:\n%s", tail)
        return data["checks"]

    def close(self) -> None:
        """Stop the child if it still runs and remove its temp folder (idempotent)."""
        if self.proc is not None:
            if self.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()
            stop_group(self.proc, timeout=5)
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> ChildSuites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_suites(in_process: bool = False) -> ChildSuites | InProcessSuites:
    return InProcessSuites() if in_process else ChildSuites()


# ---- the child ----------------------------------------------------------------------------------
# What GX imports at import time but a pandas data source fed dataframes never uses (measured with
# ``python -X importtime``: ~60% of GX's import time). GX's optional connectors: their imports are
# wrapped in ``try/except ImportError`` and GX marks them not installed; a ``None`` entry in
# ``sys.modules`` makes such an import fail at once. Only names nothing imported yet.
_UNUSED_CONNECTORS = ("sqlalchemy", "boto3", "botocore", "s3transfer", "google", "psycopg2")
# Hard dependencies that only other expectations use (scipy.stats: the KL-divergence and KS-test
# expectations; altair: their charts): loaded on first attribute use (``importlib.util.LazyLoader``),
# so anything that does use them still gets the real module.
_LAZY = ("scipy.stats", "altair")


def _lean_imports() -> None:
    import importlib.util

    for name in _UNUSED_CONNECTORS:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    for name in _LAZY:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            continue
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)


def _json_default(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


class _Lines:
    """The parent's messages, one per line, read from a file descriptor without Python's buffer,
    so that ``pending`` can tell whether the next one has already arrived."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buf = fd, b""

    def pending(self) -> bool:
        return b"\n" in self.buf or bool(select.select([self.fd], [], [], 0)[0])

    def __iter__(self):
        while True:
            while b"\n" not in self.buf:
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:  # EOF (a last line without its newline is not a whole message)
                    return
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            yield line


def child_main(work: Path) -> int:
    """Import GX (while the parent still parses), then serve the parent's messages. The result
    holds the checks and the seconds each step took since the child started (for the log)."""
    t0 = time.perf_counter()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _lean_imports()
    import pandas as pd

    from recomart.validation.gx_input import gx_frames, read_input
    from recomart.validation.suites import SuiteRun, _import_gx

    _import_gx()
    steps = {"imported": time.perf_counter() - t0}
    run: SuiteRun | None = None
    checks: dict[str, list[dict]] = {}
    lines = _Lines(sys.stdin.fileno())
    for line in lines:
        msg = json.loads(line)
        if msg["op"] == "begin":
            run = SuiteRun({n: frozenset(c) for n, c in msg["nullables"].items()}, msg["previous_rows"],
                           pd.Timestamp(msg["ds_end"]), Path(msg["docs_dir"]))
            steps["context"] = time.perf_counter() - t0
            last = next(reversed(msg["nullables"]), None)  # the datasets come in this order
        elif run is None:
            raise SuiteWorkerError(f"{msg['op']!r} before 'begin'")
        elif msg["op"] == "dataset":
            steps[f"{msg['name']} received"] = time.perf_counter() - t0
            checks[msg["name"]] = run.add(msg["name"], *gx_frames(read_input(msg)))
            steps[msg["name"]] = time.perf_counter() - t0
            if msg["name"] != last and not lines.pending():
                # idle (the parent still validates the next dataset): write this one's pages now;
                # when a message is already waiting, they are left for the end
                run.render_added()
                steps[f"{msg['name']} docs"] = time.perf_counter() - t0
        elif msg["op"] == "finish":
            index = run.build_docs()
            steps["data docs"] = time.perf_counter() - t0
            tmp = work / f"{RESULT}.tmp"
            tmp.write_text(json.dumps({"checks": checks, "docs_index": str(index), "steps": steps},
                                      default=_json_default), encoding="utf-8")
            os.replace(tmp, work / RESULT)
            return 0
        else:
            raise SuiteWorkerError(f"unknown message {msg['op']!r}")
    log.warning("stdin closed before 'finish': the validating process is gone; exiting")
    return 3


if __name__ == "__main__":
    code = child_main(Path(sys.argv[1]))
    # Everything is written (result.json last, atomically) and the logs are flushed below: skip
    # the interpreter's teardown of GX's module graph, ~0.5 s that the validating process waited
    # for on its critical path. An exception above still exits the normal way, with its traceback.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
