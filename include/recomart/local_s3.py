"""A local S3-compatible server (moto in server mode) on a free loopback port.

The tests, ``bench/bench_batch.py --lake s3`` and ``bench/bench_stream.py --lake moto`` all use
this one starter, so "an s3:// lake without an account" means the same thing everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from recomart.errors import TransientError

DEFAULT_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "recomart-local",
                       "AWS_SECRET_ACCESS_KEY": "recomart-local-secret", "AWS_REGION": "us-east-1"}


class LocalS3Error(TransientError):
    """moto's S3 server is not installed or cannot start here."""


@contextmanager
def local_s3(bucket: str, credentials: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Start the server, create ``bucket`` and yield the ``AWS_*`` settings that reach it
    (``AWS_ENDPOINT_URL`` included); the server stops when the block ends."""
    creds = dict(credentials or DEFAULT_CREDENTIALS)
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # moto[server] and boto3 are in requirements.txt
        raise LocalS3Error(f"moto[server] is not importable ({exc}); `make install` installs it") from exc
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
    except Exception as exc:
        raise LocalS3Error(f"moto S3 server cannot start on 127.0.0.1: {exc}") from exc
    try:
        host, port = server.get_host_and_port()
        env = {**creds, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"],
                     aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
                     region_name=creds["AWS_REGION"]).create_bucket(Bucket=bucket)
        yield env
    finally:
        server.stop()
