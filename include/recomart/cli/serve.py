"""`recomart serve`: the serving API on uvicorn (uvloop + httptools).

Reads (all ``RECOMART_*``): ``LAKE_ROOT`` (serving/latest.json and the published lists),
``KAFKA_BOOTSTRAP`` (exposure log + POST /v1/events; unset = both off, counted and answered 503),
``ONLINE_STORE_URL`` (unset = an embedded redis-server is started for this process tree),
``SERVING_*`` (see the README settings table). ``/readyz`` answers 200 once a batch view is
loaded and the online store answers.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack

import typer

from recomart.cli.app import app, console


@app.command("serve")
def serve(host: str = typer.Option("", help="Bind address (default settings.serving_host, "
                                            "127.0.0.1; 0.0.0.0 in a container)"),
          port: int = typer.Option(-1, help="Port (default settings.serving_port, 8000; "
                                            "0 = a free one, printed)"),
          workers: int = typer.Option(0, help="uvicorn worker processes "
                                              "(default settings.serving_workers, 1)"),
          log_level: str = typer.Option("warning", help="uvicorn log level")) -> None:
    """Run the serving API (batch view + real-time view). Ctrl-C stops it."""
    import uvicorn

    from recomart.config import get_settings, reset_settings
    from recomart.processes import interrupt_on_signals
    from recomart.serving.online_store import EmbeddedRedis
    from recomart.streaming.broker import free_port

    s = get_settings()
    host = host or s.serving_host
    port = s.serving_port if port < 0 else port
    port = port or free_port(host if host not in ("0.0.0.0", "::") else "127.0.0.1")
    workers = workers or s.serving_workers
    with ExitStack() as stack:
        if not s.online_store_url:
            redis = stack.enter_context(EmbeddedRedis(log_path=s.machine_state_dir / "redis.log"))
            os.environ["RECOMART_ONLINE_STORE_URL"] = redis.url
            console.print(f"embedded online store (redis-server) on {redis.url}: point the Faust "
                          "worker at it with RECOMART_ONLINE_STORE_URL for a live real-time view")
        if not s.kafka_bootstrap:
            console.print("[yellow]RECOMART_KAFKA_BOOTSTRAP unset: exposures are not logged "
                          "(counted as lost) and POST /v1/events answers 503")
        if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="recomart-metrics-"))
        reset_settings()
        console.print(f"serving on http://{host}:{port} ({workers} worker(s)); docs at /docs, "
                      f"explorer at /explorer", highlight=False)
        interrupt_on_signals()
        try:
            uvicorn.run("recomart.serving.app:app_from_env", factory=True, host=host, port=port,
                        workers=workers, loop="uvloop", http="httptools", log_level=log_level,
                        access_log=False, timeout_graceful_shutdown=5)
        except KeyboardInterrupt:
            console.print("stopping the API ...")
