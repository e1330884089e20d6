"""What the GX suites read, in two steps: picked in Arrow where the curated table is (cheap: a
``take`` and a zero-copy column), turned into pandas where the suites run. The step between can
be an Arrow IPC file, so the suites can run in a child process (``suite_worker``) and the pandas
conversion happens there too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from recomart.tables import DATASETS
from recomart.validation.coercion import dates_as_timestamps, to_pandas
from recomart.validation.suites import time_column

ROW_COLUMN = "__gx_row__"  # the sampled rows' positions in the curated table (the frame's index)


@dataclass
class GXInput:
    """A dataset's seeded sample (``picks``: positions taken, None = every row, in order) and its
    full time column (None when the dataset has none; ``rows`` then gives the table's length)."""

    sample: pa.Table
    picks: np.ndarray | None
    volume: pa.Table | None
    rows: int


def gx_tables(curated: pa.Table, name: str, sample_rows: int, seed: int = 42) -> GXInput:
    """The rows ``DataFrame.sample(n, random_state=seed)`` picks of the curated rows, and the full
    time column, in Arrow."""
    cols = list(DATASETS[name].columns)
    n = curated.num_rows
    picks = None
    if n > sample_rows:
        picks = np.random.RandomState(seed).choice(n, size=sample_rows, replace=False)
        sample = curated.select(cols).take(pa.array(picks))
    else:
        sample = curated.select(cols)
    ts = time_column(name)
    return GXInput(sample, picks, curated.select([ts]) if ts else None, n)


def gx_frames(inp: GXInput) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sample, volume) as the suites read them: pandas, dates as UTC timestamps, the sample
    indexed by the rows' positions in the curated table."""
    sample = to_pandas(dates_as_timestamps(inp.sample))
    if inp.picks is not None:
        sample.index = pd.Index(inp.picks)
    volume = (to_pandas(dates_as_timestamps(inp.volume)) if inp.volume is not None
              else pd.DataFrame(index=pd.RangeIndex(inp.rows)))
    return sample, volume


def gx_frame(curated: pa.Table, name: str, sample_rows: int, seed: int = 42
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both steps in one process."""
    return gx_frames(gx_tables(curated, name, sample_rows, seed))


def _write(table: pa.Table, path: Path) -> None:
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _read(path: Path) -> pa.Table:
    with pa.OSFile(str(path), "rb") as source:
        return pa.ipc.open_file(source).read_all()


def write_input(inp: GXInput, folder: Path, name: str) -> dict[str, object]:
    """``inp`` as uncompressed Arrow IPC files in ``folder``; returns the JSON message that
    :func:`read_input` takes."""
    sample = inp.sample
    if inp.picks is not None:
        sample = sample.append_column(ROW_COLUMN, pa.array(inp.picks, pa.int64()))
    msg: dict[str, object] = {"name": name, "rows": inp.rows, "sample": str(folder / f"{name}.sample.arrow"),
                              "volume": None}
    _write(sample, folder / f"{name}.sample.arrow")
    if inp.volume is not None:
        msg["volume"] = str(folder / f"{name}.volume.arrow")
        _write(inp.volume, folder / f"{name}.volume.arrow")
    return msg


def read_input(msg: dict) -> GXInput:
    sample = _read(Path(msg["sample"]))
    picks = None
    if ROW_COLUMN in sample.column_names:
        picks = sample[ROW_COLUMN].to_numpy()
        sample = sample.drop_columns([ROW_COLUMN])
    volume = _read(Path(msg["volume"])) if msg["volume"] else None
    return GXInput(sample, picks, volume, int(msg["rows"]))
