"""`recomart stack`: start-up time, resident memory per service, status and stop times.

Prints figures, asserts nothing. Runs a throw-away stack in a temporary folder:

    nice .venv/bin/python bench/bench_stack.py
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path


def rss_mb(pgid: int) -> float:
    from recomart.processes import group_members

    total = 0
    for pid in group_members(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> None:
    from recomart.config import Settings
    from recomart.stack.runner import Stack

    root = Path(tempfile.mkdtemp(prefix="recomart-bench-stack-"))
    root.chmod(0o755)
    os.environ["RECOMART_STACK_DIR"] = str(root)
    st = Stack(Settings())
    marks: list[tuple[str, float]] = []
    t0 = time.monotonic()
    try:
        st.up(step=lambda m: marks.append((m, time.monotonic() - t0)))
        up_s = time.monotonic() - t0
        for msg, at in marks:
            print(f"{at:7.1f}s  {msg}")
        print(f"stack up: {up_s:.1f} s (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        time.sleep(10)  # settle: the Faust workers join their group, Airflow parses the DAGs
        total = 0.0
        print(f"{'service':24} {'RSS MB':>8}")
        for p in st.procs():
            mb = rss_mb(p.pid)
            total += mb
            print(f"{p.name:24} {mb:8.0f}")
        print(f"{'total':24} {total:8.0f}")
        t1 = time.monotonic()
        rows = st.status()
        healthy = sum(r["state"] == "healthy" for r in rows)
        print(f"stack status: {time.monotonic() - t1:.1f} s, {healthy}/{len(rows)} healthy "
              f"({sum(r['state'] == 'skipped' for r in rows)} skipped)")
        for r in rows:
            if r["state"] not in ("healthy", "skipped"):
                print(f"  {r['service']}: {r['state']} ({r['detail']})")
    finally:
        t2 = time.monotonic()
        st.down(step=lambda m: print("  " + m))
        print(f"stack down: {time.monotonic() - t2:.1f} s")
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
