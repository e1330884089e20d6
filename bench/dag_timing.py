"""Time a command (e.g. ``recomart run recomart_training``) with its wall time and peak memory.

Shared by the DAG-level benches (``bench_training_dag.py``; ``bench_pipeline.py`` and
``bench_scaling.py`` import it too): the command runs as a child process while a sampler thread
sums the resident memory of its whole process tree (Airflow's ``dags test`` may run tasks in
child processes) every ``interval`` seconds; ``resource.RUSAGE_CHILDREN`` adds the largest single
process's peak as the kernel saw it. Prints nothing, asserts nothing: callers print.

    from dag_timing import run_dag_timed
    t = run_dag_timed("recomart_training", "2024-06-29", env)   # {"wall_s", "peak_tree_rss_mb", ...}
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out.extend(int(c) for c in text.split())
    except OSError:
        pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB (Linux ``/proc``)."""
    seen, todo, total = set(), [pid], 0
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += _rss_kb(p)
        todo.extend(_children(p))
    return total / 1024.0


def run_timed(cmd: Sequence[str], env: Mapping[str, str] | None = None, *,
              interval: float = 0.25, log_path: Path | None = None) -> dict[str, Any]:
    """Run ``cmd`` to completion: ``{"cmd", "returncode", "wall_s", "cpu_s", "peak_tree_rss_mb",
    "peak_process_rss_mb", "output_tail"}`` (output goes to ``log_path`` when given)."""
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    before = usage0.ru_maxrss
    out = open(log_path, "w", encoding="utf-8") if log_path else subprocess.PIPE  # noqa: SIM115
    started = time.perf_counter()
    proc = subprocess.Popen(list(cmd), env=dict(env) if env is not None else None, stdout=out,
                            stderr=subprocess.STDOUT, text=True)
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    text, _ = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if log_path:
        out.close()
        text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = usage.ru_maxrss
    cpu = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    return {"cmd": " ".join(cmd), "returncode": proc.returncode, "wall_s": round(wall, 2),
            # CPU seconds of the whole tree: a figure a busy shared machine distorts far less
            "cpu_s": round(cpu, 2),
            "peak_tree_rss_mb": round(peak[0], 1),
            # the kernel's figure for the largest child process so far (0 when an earlier, bigger
            # child already set it: it is a running maximum over every waited-for child)
            "peak_process_rss_mb": round(after / 1024.0, 1) if after > before else None,
            "output_tail": "\n".join((text or "").splitlines()[-15:])}


def recomart_cli() -> str:
    """The ``recomart`` console script of the running virtualenv."""
    return str(Path(sys.executable).parent / "recomart")


def run_dag_timed(dag_id: str, ds: str, env: Mapping[str, str] | None = None,
                  **kwargs: Any) -> dict[str, Any]:
    """``recomart run <dag_id> --date <ds>`` (Airflow's ``dags test``) timed by ``run_timed``."""
    return {"dag_id": dag_id, "ds": ds,
            **run_timed([recomart_cli(), "run", dag_id, "--date", ds], env, **kwargs)}
