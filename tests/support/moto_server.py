"""A local S3 server (moto's server mode) on loopback, started once per test session."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import requests

from support.helpers import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    """``{"url", "client"}``: moto's S3 server as a subprocess on 127.0.0.1 and a boto3 client of
    it (credentials :data:`CREDENTIALS`). Tests create their own buckets."""
    import boto3

    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{url}/moto-api/", timeout=2).ok:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"moto server did not start on {url}")
        time.sleep(0.3)
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                          region_name=CREDENTIALS["AWS_DEFAULT_REGION"])
    yield {"url": url, "client": client}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()
