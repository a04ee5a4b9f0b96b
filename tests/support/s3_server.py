"""A real S3-compatible HTTP endpoint for the tests: moto's server mode on a
loopback port the OS picks, in the test process.

    with s3_server() as s3:
        location = s3.bucket("images")      # a new bucket, an S3Location for it
        S3ImageStore(location).put(...)
        s3.stop()                           # the endpoint goes away mid-test

moto keeps its buckets in process-wide memory, so every bucket gets a unique
name and no test sees another's objects.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from moto.server import ThreadedMotoServer

from services.image.adapters.s3_image_store import S3Location

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


@dataclass
class RunningS3:
    server: ThreadedMotoServer
    endpoint_url: str
    stopped: bool = False

    def location(self, bucket: str, **overrides: object) -> S3Location:
        fields: dict[str, object] = {
            "bucket": bucket,
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
            "timeout_seconds": 2.0,
            "max_attempts": 1,
            **overrides,
        }
        return S3Location(**fields)  # type: ignore[arg-type]

    def bucket(self, name: str = "images", **overrides: object) -> S3Location:
        """Create a bucket of its own for the test; its location."""
        unique = f"{name}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=unique)
        return self.location(unique, **overrides)

    def missing_bucket(self) -> S3Location:
        return self.location(f"never-created-{uuid.uuid4().hex[:12]}")

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def keys(self, location: S3Location) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=location.bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))

    def stop(self) -> None:
        """Stop serving and close the listening socket: calls are refused."""
        if self.stopped:
            return
        self.stopped = True
        self.server.stop()
        listener = self.server._server  # noqa: SLF001 - stop() leaves it open
        if listener is not None:
            listener.server_close()


@contextmanager
def s3_server() -> Iterator[RunningS3]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    running = RunningS3(server, f"http://{host}:{port}")
    try:
        yield running
    finally:
        running.stop()


def closed_endpoint() -> str:
    """The URL of a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"
