"""``state/validation_history.jsonl``: one line per logical date (a re-run replaces its line), the
baseline the next run's volume checks compare against."""

from __future__ import annotations

import json
from typing import Any

from recomart.lake import Lake

HISTORY = "validation_history.jsonl"


def read_history(lake: Lake) -> list[dict[str, Any]]:
    path = lake.path("state", HISTORY)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def previous_curated_rows(lake: Lake, ds: str) -> dict[str, int]:
    """Curated row counts of the latest run before ``ds`` that passed its gate (a rejected run is
    no baseline: comparing against it would make a bad delivery look normal)."""
    earlier = [h for h in read_history(lake)
               if h.get("logical_date", "") < ds and h.get("status") != "fail"]
    if not earlier:
        return {}
    last = max(earlier, key=lambda h: h["logical_date"])
    return {name: d["curated"] for name, d in last.get("datasets", {}).items()}


def record_run(lake: Lake, summary: dict[str, Any]) -> None:
    keep = [h for h in read_history(lake) if h.get("logical_date") != summary["logical_date"]]
    line = {"run_id": summary["run_id"], "logical_date": summary["logical_date"],
            "generated_at": summary["generated_at"], "status": summary["status"],
            "datasets": {name: {k: d[k] for k in ("rows_in", "curated", "quarantined", "bad_ratio",
                                                  "status", "reasons", "curated_version")}
                         for name, d in summary["datasets"].items()}}
    rows = sorted([*keep, line], key=lambda h: h["logical_date"])
    lake.write_text(lake.path("state", HISTORY), "".join(json.dumps(h, sort_keys=True) + "\n"
                                                         for h in rows))
