"""Speed-layer figures: landing events/s per worker (topic -> durable lake), freshness p50/p99
(produce -> readable in the lake), beside the raw consume rate of a plain consumer on the same
broker. ``python bench/bench_stream.py [--small]``; prints figures, asserts nothing."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from recomart.config import get_settings
from recomart.lake import Lake
from recomart.streaming.broker import EmbeddedBroker, free_port
from recomart.streaming.producer import produce
from recomart.streaming.sink import list_files

FAUST = Path(sys.executable).parent / "faust"


def plain_consume_rate(bootstrap: str, topic: str, expected: int) -> float:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, "log_level": 3,
                  "session.timeout.ms": 8000, "heartbeat.interval.ms": 2000})
    c.subscribe([topic])
    n, start, last = 0, None, time.monotonic()
    deadline = time.monotonic() + 120
    while n < expected and time.monotonic() < deadline and (start is None or
                                                           time.monotonic() - last < 3):
        msgs = c.consume(5000, timeout=0.5)
        if msgs:
            start, last = start or time.monotonic(), time.monotonic()
        n += sum(1 for m in msgs if m.error() is None)
    elapsed = last - (start or last)
    c.close()
    return n / elapsed if elapsed else float("nan")


def landed(lake: Lake) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in list_files(lake))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    n = 50_000 if args.small else 200_000
    fresh_rate, fresh_s = (2000, 10) if args.small else (5000, 20)
    topic = get_settings().clickstream_topic
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(embedded=True) as broker:
        lake = Lake(Path(tmp) / "lake")
        sent = produce(broker.bootstrap, topic, 0, 0, 0.01, count=n, seed=1)
        print(f"produced {n} messages at {sent.summary()['rate']:.0f}/s (1% malformed)")
        raw = plain_consume_rate(broker.bootstrap, topic, n)
        env = dict(os.environ, RECOMART_KAFKA_BOOTSTRAP=broker.bootstrap,
                   RECOMART_LAKE_ROOT=str(lake.root), RECOMART_STREAM_DECISIONS="0")
        worker = subprocess.Popen([str(FAUST), "-A", "recomart.streaming.app", "worker", "-l",
                                   "warning", "--web-port", str(free_port())], env=env,
                                  stdout=open(Path(tmp) / "worker.log", "wb"),  # noqa: SIM115
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            first = None
            while (rows := landed(lake)) < sent.valid:
                if rows and first is None:
                    first = (time.monotonic(), rows)
                time.sleep(0.05)
            t_end = time.monotonic()
            rate = (rows - first[1]) / (t_end - first[0]) if first else float("nan")
            before = set(list_files(lake))
            produce(broker.bootstrap, topic, fresh_rate, fresh_s, 0.0, seed=2)
            time.sleep(3)
            lags = []
            for p in set(list_files(lake)) - before:
                mtime_us = p.stat().st_mtime_ns // 1000
                kts = pq.read_table(p, columns=["_kafka_ts"])["_kafka_ts"].cast("int64")
                lags.extend((mtime_us - v) / 1000 for v in kts.to_pylist())
            lags.sort()
            p50 = lags[len(lags) // 2] if lags else float("nan")
            p99 = lags[int(len(lags) * 0.99)] if lags else float("nan")
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(60)
        print(f"plain consumer (confluent-kafka, no processing): {raw:,.0f} msgs/s")
        print(f"worker landing (validate + DLQ + parquet fsync + commit): {rate:,.0f} events/s")
        print(f"freshness at {fresh_rate}/s: p50 {p50:,.0f} ms, p99 {p99:,.0f} ms "
              f"({len(lags)} events; produce timestamp -> landed file mtime)")


if __name__ == "__main__":
    main()
