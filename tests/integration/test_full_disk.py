"""A workspace on a disk that fills up (a real tmpfs of a few MB, mounted by the test as root):
`labelloop run` fails with one line that names where to free space, nothing half-written is left,
and the same command succeeds once space is freed. Where mounting is not allowed, the full disk is
injected at the first table write instead (LABELLOOP_FAILURES), which checks the same message."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.helpers import REPO_ROOT, cli, skimage_data


def labelloop(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("LABELLOOP_WORKSPACE", "LABELLOOP_FAILURES")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "--workspace", str(root), *args], env=e,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture
def small_disk(tmp_path):
    """A 24 MB tmpfs at ``tmp_path/disk`` (None when this process may not mount one)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path) -> Path:
    """Fill ``disk`` up to its last bytes; returns the filler file."""
    filler = disk / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_stops_run_with_one_line_and_nothing_half_written(small_disk, tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    for n in ("coffee.png", "chelsea.png"):
        shutil.copyfile(skimage_data() / n, src / n)
    base = small_disk or tmp_path
    root = base / "ws"
    cli(root, "init")
    cli(root, "ingest", str(src), "--batch", "b1")
    if small_disk is not None:
        filler = fill(small_disk)
        res = labelloop(root, "run")
    else:
        filler = None
        res = labelloop(root, "run", env={"LABELLOOP_FAILURES": "table-write=enospc"})
    assert res.returncode == 1, res.stdout + res.stderr
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert err[-1].startswith("labelloop: error: ") and len(err[-1]) < 600, err[-1]
    assert "full" in err[-1] and "free space" in err[-1], err[-1]
    assert str(root) in err[-1]  # where to free it
    leftovers = [p for p in (root / "tables").rglob(".tmp-*")] if (root / "tables").is_dir() else []
    assert leftovers == []
    if filler is not None:
        filler.unlink()
    again = labelloop(root, "run")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "batch b1" in again.stdout and "2 ok" in again.stdout


def test_a_table_write_on_a_full_disk_names_the_table(tmp_path):
    """A full disk met by labelloop's own atomic writer (injected at the first table write): the
    line names the table being written and nothing of it is left half-written."""
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copyfile(skimage_data() / "coffee.png", src / "coffee.png")
    root = tmp_path / "ws"
    cli(root, "init")
    cli(root, "ingest", str(src), "--batch", "b1")
    res = labelloop(root, "run", env={"LABELLOOP_FAILURES": "table-write=enospc"})
    assert res.returncode == 1
    err = res.stderr.strip().splitlines()[-1]
    assert "No space left on device" in err and "raw_images/b1.parquet" in err and "free space" in err, err
    assert not (root / "tables" / "raw_images").is_dir() or not list((root / "tables" / "raw_images").iterdir())
    assert labelloop(root, "run").returncode == 0


def test_temporary_files_a_killed_writer_left_go_at_the_next_run(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    shutil.copyfile(skimage_data() / "coffee.png", src / "coffee.png")
    root = tmp_path / "ws"
    cli(root, "init")
    cli(root, "ingest", str(src), "--batch", "b1")
    cli(root, "run")
    old = [root / "tables" / "raw_images" / ".tmp-abc.parquet", root / "tables" / "labels" / ".tmp-x"]
    for p in old:
        p.write_bytes(b"PAR1 half")
        os.utime(p, (1_700_000_000, 1_700_000_000))  # long before any write in progress
    fresh = root / "tables" / "raw_images" / ".tmp-now.parquet"
    fresh.write_bytes(b"PAR1 half")  # as a writer in progress right now has it: left alone
    cli(root, "run")
    assert not any(p.exists() for p in old) and fresh.exists()
