"""`recomart stream ...`: the speed layer (embedded broker, Faust worker, clickstream producer)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import typer

from recomart.cli.app import app, console

stream_app = typer.Typer(help="Speed layer: embedded Kafka broker, Faust worker, producer.",
                         no_args_is_help=True)
app.add_typer(stream_app, name="stream")


@stream_app.command("broker")
def broker(port: int = typer.Option(0, help="Loopback port (0 = a free one)"),
           partitions: int = typer.Option(4, help="Partitions of the speed-layer topics")) -> None:
    """Run the embedded Tansu broker in the foreground; prints the bootstrap address. Ctrl-C stops it."""
    from recomart.streaming.broker import EmbeddedBroker, default_topics

    with EmbeddedBroker(topics=default_topics(partitions), port=port or None) as b:
        if not b.started:
            console.print(f"RECOMART_KAFKA_BOOTSTRAP is set: using Kafka at {b.bootstrap}")
            return
        print(b.bootstrap, flush=True)
        console.print(f"Tansu broker on {b.bootstrap} (memory storage). Point clients at it with\n"
                      f"  export RECOMART_KAFKA_BOOTSTRAP={b.bootstrap}\nCtrl-C to stop.")
        try:
            while b.proc is not None and b.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("stopping broker ...")


@stream_app.command("worker")
def worker(web_port: int = typer.Option(6066, help="Faust web server port (/trending/, /stats/)"),
           loglevel: str = typer.Option("info", "--loglevel", "-l")) -> None:
    """Run the Faust worker (long-running). Starts an embedded broker when no Kafka is configured."""
    from recomart.config import get_settings, reset_settings
    from recomart.streaming.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        if b.started:
            os.environ["RECOMART_KAFKA_BOOTSTRAP"] = b.bootstrap
            reset_settings()
            console.print(f"embedded broker on {b.bootstrap} (set RECOMART_KAFKA_BOOTSTRAP to "
                          "produce to it)")
        console.print(f"landing into {get_settings().lake_root}/speed/clickstream; "
                      f"trending at http://127.0.0.1:{web_port}/trending/")
        from faust.cli.faust import cli

        sys.argv = ["faust", "-A", "recomart.streaming.app", "worker", "-l", loglevel,
                    "--web-port", str(web_port)]
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
