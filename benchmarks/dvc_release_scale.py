"""Recording a large release in DVC: per-file outputs against the MD5 floor, and tar shards.

    python benchmarks/dvc_release_scale.py --files 100000 [--shard-mb 256] [--no-push]

A release folder of ``--files`` small generated images (64x64, 9 in 10 JPEG, 1 in 10 PNG; every
file different, under ``release/images/<split>/``, as :mod:`labelloop.release.build` lays them out)
in a fresh git + DVC repository whose ``dvc.yaml`` is the workspace template (the ``release``
stage, output ``release``). Timed, in this order:

1. MD5 floor: ``hashlib.md5`` over every file's bytes (open, read, hash), one core, this process,
   after one untimed read of every file so both sides find them in the page cache.
2. ``dvc commit -f -q release``: what the release stage runs (:func:`labelloop.workspace.versioning.commit_release`):
   DVC hashes every output file (MD5) and stores it in the cache. Target <= 2x the floor.
3. ``dvc push`` to a local S3 server (moto's server mode on 127.0.0.1, a subprocess), as
   :func:`labelloop.workspace.remotes.push` does with an ``s3://`` remote and an endpoint URL.
4. The same bytes as content-addressed tar shards (:mod:`labelloop.release.shards`, about
   ``--shard-mb`` MiB each, ``release/shards/<split>-<sha>.tar`` + ``index.parquet``): the
   seconds to pack them, their MD5 floor, ``dvc commit`` and ``dvc push`` of that release.

Prints seconds, files/s and the ratios ``dvc commit / md5 floor`` for both layouts.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labelloop.release import shards  # noqa: E402
from labelloop.workspace.init import package_text  # noqa: E402
from labelloop.workspace.versioning import dvc, git  # noqa: E402


def make_files(folder: Path, n: int, seed: int = 0) -> int:
    """Write ``n`` distinct 64x64 images under ``folder/<split>/``; returns their total bytes.

    Each is one of 256 noisy gradient textures with the rest of its index drawn in four flat
    blocks (so every file differs), encoded as JPEG (quality 90) or, one in ten, PNG."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    textures = [(127 + 60 * np.sin(a * xx + b * yy)[..., None] * rng.uniform(0.3, 1, 3)
                 + rng.normal(0, 12, (64, 64, 3))).clip(0, 255).astype(np.uint8)
                for a, b in rng.uniform(0.05, 0.4, (256, 2))]
    total = 0
    for i in range(n):
        split = "train" if i % 10 < 8 else "val" if i % 10 == 8 else "test"
        img = textures[i % 256].copy()
        for k in range(4):  # i // 256 in base 16 as flat 8x8 blocks JPEG keeps: no two files alike
            img[8:16, 8 * k:8 * k + 8] = 8 + 16 * ((i >> (8 + 4 * k)) & 15)
        buf = io.BytesIO()
        png = i % 10 == 9
        Image.fromarray(img).save(buf, format="PNG" if png else "JPEG", quality=90)
        name = hashlib.sha256(buf.getvalue()).hexdigest()[:16] + (".png" if png else ".jpg")
        out = folder / split / name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(buf.getvalue())
        total += len(buf.getvalue())
    return total


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def md5_floor(files: list[Path]) -> float:
    """Seconds to read and MD5 every file, one core (the work DVC's hashing cannot avoid)."""
    t = time.perf_counter()
    for f in files:
        with open(f, "rb") as fh:
            hashlib.md5(fh.read()).hexdigest()
    return time.perf_counter() - t


def new_repo(root: Path) -> None:
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "bench")
    git(root, "config", "user.email", "bench@localhost")
    dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    (root / "dvc.yaml").write_text(package_text("dvc.yaml"), encoding="utf-8")
    (root / "tables" / "labels").mkdir(parents=True)
    (root / "tables" / "labels" / "labels.parquet").write_bytes(b"")
    (root / "labelloop.yaml").write_text("project: bench\n", encoding="utf-8")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def start_s3(work: Path) -> tuple[subprocess.Popen, str]:
    """moto's S3 server on a free loopback port, with the bucket ``releases``."""
    import boto3
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(work / "moto.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if requests.get(f"{url}/moto-api/", timeout=2).ok:
                break
        except requests.RequestException:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError(f"moto server did not start on {url} (log: {work / 'moto.log'})")
    boto3.client("s3", endpoint_url=url, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket="releases")
    return proc, url


def measure(root: Path, label: str, url: str | None, push_max: int) -> dict:
    files = files_under(root / "release")
    size = sum(f.stat().st_size for f in files)
    md5_floor(files)  # page cache
    floor = md5_floor(files)
    startup = min(timed(lambda: dvc(root, "root")) for _ in range(2))  # the CLI's fixed cost
    commit = timed(lambda: dvc(root, "commit", "-f", "-q", "release"))
    out = {"layout": label, "files": len(files), "mb": size / 2**20, "md5": floor, "commit": commit,
           "startup": startup}
    print(f"{label:<7} {len(files):7d} files {size / 2**20:8.1f} MiB  md5 floor {floor:7.2f} s "
          f"({len(files) / floor:8.0f} files/s)  dvc commit {commit:7.2f} s ({len(files) / commit:7.0f} files/s)"
          f"  x{commit / floor:.2f} of the floor (target <= 2)", flush=True)
    print(f"{'':<7} of which DVC's start (`dvc root`: interpreter, imports, repo) {startup:.2f} s; "
          f"without it x{max(commit - startup, 0) / floor:.2f} of the floor", flush=True)
    if url and len(files) > push_max:
        print(f"{'':<7} dvc push left out: {len(files)} files > --push-max {push_max}", flush=True)
    elif url:
        dvc(root, "remote", "add", "-f", "-d", "s3", f"s3://releases/{label}")
        dvc(root, "remote", "modify", "--local", "s3", "endpointurl", url)
        out["push"] = timed(lambda: dvc(root, "push", "-q"))
        print(f"{'':<7} dvc push to S3 (moto, loopback) {out['push']:7.2f} s ({len(files) / out['push']:.0f} files/s, "
              f"{size / 2**20 / out['push']:.1f} MiB/s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--shard-mb", type=float, default=256)
    ap.add_argument("--no-push", action="store_true", help="leave out the S3 server and dvc push")
    ap.add_argument("--push-max", type=int, default=1_000_000,
                    help="push a layout only when it has at most this many files (moto takes ~70 files/s)")
    ap.add_argument("--work-dir", help="keep the repositories here (default: a temporary folder)")
    a = ap.parse_args(argv)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    tmp = None if a.work_dir else tempfile.TemporaryDirectory(prefix="dvc-release-scale-")
    work = Path(a.work_dir or tmp.name)
    proc = None
    try:
        flat, sharded = work / "files", work / "shards"
        new_repo(flat)
        t = time.perf_counter()
        size = make_files(flat / "release" / "images", a.files)
        print(f"{a.files} images ({size / 2**20:.1f} MiB) made in {time.perf_counter() - t:.1f} s; "
              f"{os.cpu_count()} CPUs", flush=True)
        url = None
        if not a.no_push:
            proc, url = start_s3(work)
        res = {"files": measure(flat, "files", url, a.push_max)}
        new_repo(sharded)
        src = flat / "release" / "images"
        target = int(a.shard_mb * 2**20)

        def pack():
            for split in ("train", "val", "test"):
                members = {p.relative_to(src).as_posix(): p for p in files_under(src / split)}
                shards.write_shards(members, sharded / "release" / "shards" / split, prefix=split, target_bytes=target)

        res["pack"] = timed(pack)
        print(f"packed into shards in {res['pack']:.2f} s", flush=True)
        res["shards"] = measure(sharded, "shards", url, a.push_max)
        return res
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        if tmp:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
