"""`recomart stream ...`: the speed layer (embedded broker, Faust worker, clickstream producer)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import typer

from recomart.cli.app import app, console

stream_app = typer.Typer(help="Speed layer: embedded Kafka broker, Faust worker, producer.",
                         no_args_is_help=True)
app.add_typer(stream_app, name="stream")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@stream_app.command("broker")
def broker(port: int = typer.Option(0, help="Loopback port (0 = a free one)"),
           partitions: int = typer.Option(0, help="Partitions of the speed-layer topics "
                                                  "(0 = settings.stream_partitions)")) -> None:
    """Run the embedded Tansu broker in the foreground; prints the bootstrap address. Ctrl-C stops it."""
    from recomart.streaming.broker import EmbeddedBroker, default_topics

    with EmbeddedBroker(topics=default_topics(partitions or None), port=port or None) as b:
        if not b.started:
            console.print(f"RECOMART_KAFKA_BOOTSTRAP is set: using Kafka at {b.bootstrap}")
            return
        signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the broker like Ctrl-C
        print(b.bootstrap, flush=True)
        console.print(f"Tansu broker on {b.bootstrap} (memory storage). Point clients at it with\n"
                      f"  export RECOMART_KAFKA_BOOTSTRAP={b.bootstrap}\nCtrl-C to stop.")
        try:
            while b.proc is not None and b.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("stopping broker ...")


@stream_app.command("create-topics")
def create_topics(partitions: int = typer.Option(0, help="Partitions per topic "
                                                         "(0 = settings.stream_partitions)"),
                  timeout: float = typer.Option(30.0, help="Seconds to wait for the broker")) -> None:
    """Create the clickstream, dead-letter and recommendations topics on RECOMART_KAFKA_BOOTSTRAP.

    Idempotent: topics that exist are left alone (a partition count that differs is reported).
    """
    from recomart.config import get_settings
    from recomart.streaming.broker import BrokerError, default_topics, ensure_topics

    bootstrap = get_settings().kafka_bootstrap
    if not bootstrap:
        console.print("[red]RECOMART_KAFKA_BOOTSTRAP is not set: nothing to create topics on. "
                      "(`recomart stream broker` runs an embedded broker and creates them itself.)")
        raise typer.Exit(2)
    topics = default_topics(partitions or None)
    try:
        report = ensure_topics(bootstrap, topics, timeout=timeout)
    except BrokerError as exc:
        console.print(f"[red]cannot create topics on {bootstrap}: {exc}")
        raise typer.Exit(1) from exc
    for name, wanted in topics.items():
        state, actual = report[name]
        note = f" (has {actual}, wanted {wanted})" if actual != wanted else ""
        console.print(f"{name}: {state}, {actual} partitions{note}")


@stream_app.command("worker")
def worker(web_port: int = typer.Option(0, help="Faust web server port (/trending/, /stats/); "
                                               "0 = settings.stream_web_port (6066)"),
           web_host: str = typer.Option("", help="Interface the web server binds; empty = "
                                                 "settings.stream_web_host (127.0.0.1). Use "
                                                 "0.0.0.0 in a container."),
           loglevel: str = typer.Option("info", "--loglevel", "-l")) -> None:
    """Run the Faust worker (long-running). Starts an embedded broker when no Kafka is configured,
    and an embedded online store (redis-server) when RECOMART_ONLINE_STORE_URL is unset."""
    from recomart.config import get_settings, reset_settings
    from recomart.serving.online_store import EmbeddedRedis
    from recomart.streaming.broker import EmbeddedBroker

    if web_host:
        os.environ["RECOMART_STREAM_WEB_HOST"] = web_host
    if web_port:
        os.environ["RECOMART_STREAM_WEB_PORT"] = str(web_port)
    reset_settings()
    s = get_settings()
    with EmbeddedBroker() as b, EmbeddedRedis(s.online_store_url,
                                              log_path=s.machine_state_dir / "redis.log") as r:
        if r.started:
            os.environ["RECOMART_ONLINE_STORE_URL"] = r.url
            reset_settings()
            console.print(f"embedded online store on {r.url} (set RECOMART_ONLINE_STORE_URL to "
                          "serve from it)")
        if b.started:
            os.environ["RECOMART_KAFKA_BOOTSTRAP"] = b.bootstrap
            reset_settings()
            console.print(f"embedded broker on {b.bootstrap} (set RECOMART_KAFKA_BOOTSTRAP to "
                          "produce to it)")
        console.print(f"landing into {s.lake_root}/speed/clickstream; trending at "
                      f"http://{s.stream_web_host}:{s.stream_web_port}/trending/")
        from faust.cli.faust import cli

        sys.argv = ["faust", "-A", "recomart.streaming.app", "worker", "-l", loglevel,
                    "--web-port", str(s.stream_web_port), "--web-bind", s.stream_web_host]
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            cli(standalone_mode=False)


@stream_app.command("produce")
def produce(rate: float = typer.Option(1000, help="Messages per second (0 = as fast as possible)"),
            duration: float = typer.Option(10, help="Seconds to produce for"),
            malformed_share: float = typer.Option(0.01, min=0, max=1),
            source: str = typer.Option("generated", help="generated | movielens"),
            path: Path = typer.Argument(None, help="Source folder (MovieLens dir or generator "
                                                   "output; default: settings.source_dir)"),
            seed: int = typer.Option(42)) -> None:
    """Send a realistic clickstream (with a share of malformed messages) to the clickstream topic."""
    import json

    from rich.progress import Progress

    from recomart.config import get_settings
    from recomart.streaming.producer import produce as run

    s = get_settings()
    if not s.kafka_bootstrap:
        console.print("[red]set RECOMART_KAFKA_BOOTSTRAP (see `recomart stream broker`)")
        raise typer.Exit(2)
    total = int(rate * duration)
    with Progress(console=console) as progress:
        task = progress.add_task("producing", total=total or None)
        result = run(s.kafka_bootstrap, s.clickstream_topic, rate, duration, malformed_share,
                     source, seed, source_path=path,
                     progress=lambda n: progress.update(task, completed=n))
    print(json.dumps(result.summary(), indent=2))
