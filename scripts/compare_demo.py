"""Compare what two runs of ``labelloop demo`` produced: the same release files, tables and ids.

    python scripts/compare_demo.py WORKSPACE_A WORKSPACE_B
    python scripts/compare_demo.py --before REV [--work-dir DIR]   # run the demo with the code at git
                                                                     # REV and with this checkout, compare

What must be equal (each difference is printed; the exit code is 1 when there is one):

- the release's COCO JSON, YOLO label files and ``data.yaml``: byte for byte;
- every Parquet table under ``tables/`` and ``release/`` (matched by relative path): the Arrow
  schema, and the rows after dropping the columns listed in :data:`VOLATILE` (absolute paths,
  timestamps, Dagster run ids: they differ between any two runs of the same code), sorted;
- the image, label, model, prediction and review ids those rows carry (part of the rows);
- the set of files under ``release/`` and ``tables/`` (names of files written per run, such as a
  prediction part file's name, are the same in two runs of the same code).

``--before`` checks the code at REV out into a temporary folder (``git worktree``) and runs its
demo from there, in this checkout's virtual environment, so both runs use the same installed
packages.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
# Columns whose values differ between two runs of the same code (found by comparing two runs of
# one revision): where the workspace is, when something ran, and which Dagster run did it.
VOLATILE = {"origin_path", "file", "run_id", "import_run_id", "label_run_id", "release_run_id", "exported_at",
            "found_at", "registered_at", "git_sha", "content_sha256"}
BYTE_EQUAL = (".json", ".txt", ".yaml")


def parquet_files(root: Path) -> dict[str, Path]:
    out = {}
    for sub in ("tables", "release"):
        for p in sorted((root / sub).rglob("*.parquet")):
            if not p.name.startswith(".tmp-"):
                out[p.relative_to(root).as_posix()] = p
    return out


def rows_of(path: Path) -> tuple[str, list]:
    t = pq.read_table(path)
    keep = [c for c in t.column_names if c not in VOLATILE]
    rows = t.select(keep).to_pylist()
    return str(t.schema.remove_metadata()), sorted(repr(sorted(r.items())) for r in rows)


def compare(a: Path, b: Path) -> list[str]:
    """The differences between demo workspaces ``a`` and ``b`` (empty: the same results)."""
    problems = []
    ra, rb = a / "release", b / "release"
    files_a = {p.relative_to(ra).as_posix() for p in ra.rglob("*") if p.is_file()} if ra.is_dir() else set()
    files_b = {p.relative_to(rb).as_posix() for p in rb.rglob("*") if p.is_file()} if rb.is_dir() else set()
    for name in sorted(files_a ^ files_b):
        problems.append(f"release/{name}: only in {'A' if name in files_a else 'B'}")
    for name in sorted(files_a & files_b):
        if name.endswith(BYTE_EQUAL) and name != "manifest.json" and (ra / name).read_bytes() != (rb / name).read_bytes():
            problems.append(f"release/{name}: bytes differ")
    pa_, pb_ = parquet_files(a), parquet_files(b)
    for name in sorted(set(pa_) ^ set(pb_)):
        problems.append(f"{name}: only in {'A' if name in pa_ else 'B'}")
    for name in sorted(set(pa_) & set(pb_)):
        sa, rows_a = rows_of(pa_[name])
        sb, rows_b = rows_of(pb_[name])
        if sa != sb:
            problems.append(f"{name}: schemas differ:\n  A {sa}\n  B {sb}")
        elif rows_a != rows_b:
            diff = sorted(set(rows_a) ^ set(rows_b))
            problems.append(f"{name}: rows differ ({len(rows_a)} vs {len(rows_b)}); first: {diff[0][:300]}")
    return problems


# The demo of the code in a folder: that folder first on sys.path, and the editable install's
# finder (it resolves `labelloop` to this checkout whatever PYTHONPATH says) taken out.
CODE_AT = """
import runpy, sys
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
sys.path.insert(0, sys.argv[1])
sys.argv = ["labelloop"] + sys.argv[2:]
runpy.run_module("pipelines.cli", run_name="__main__")
"""


def run_demo(workspace: Path, code: Path | None) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LABELLOOP_WORKSPACE"}
    args = ["-c", CODE_AT, str(code)] if code is not None else ["-m", "pipelines.cli"]
    subprocess.run([sys.executable, *args, "demo", "--workspace", str(workspace)], env=env, check=True,
                   stdout=subprocess.DEVNULL, cwd=workspace.parent)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workspaces", nargs="*", type=Path, help="two demo workspaces to compare")
    ap.add_argument("--before", help="git revision whose demo is compared with this checkout's")
    ap.add_argument("--work-dir", type=Path, help="where the two demo workspaces go (default: a temporary folder)")
    args = ap.parse_args()
    if args.before:
        work = args.work_dir or Path(tempfile.mkdtemp(prefix="compare-demo-"))
        work.mkdir(parents=True, exist_ok=True)
        old = work / "code-before"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(old), args.before],
                       check=True, stdout=subprocess.DEVNULL)
        try:
            a, b = work / "demo-before", work / "demo-after"
            run_demo(a, old)
            run_demo(b, None)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False)
    elif len(args.workspaces) == 2:
        a, b = args.workspaces
    else:
        ap.error("give two workspaces, or --before REV")
    problems = compare(a, b)
    for p in problems:
        print(p)
    n = len(parquet_files(a))
    print(f"{a} vs {b}: {n} tables and the release files compared, "
          + ("the same results" if not problems else f"{len(problems)} differences"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
