"""How the pipeline's cost grows with the data: per-stage seconds, images/s and peak memory.

    python benchmarks/pipeline_scale.py --images 2000 --batch-size 500 [--workers 1] [--skip-prelabel]

Images: ``--images`` files made from the 12 photos bundled with scikit-image, matplotlib and
scikit-learn (:mod:`labelloop.images.samples`): random crops (50-100% of each side), horizontal flips,
resizes (60-120%) and JPEG recompression (quality 70-95; one in ten a PNG), so
every image_id differs; about 12% are recompressions of an earlier image (another quality, 97%
size: near duplicates, also across batches) and 1% byte copies of an earlier file (exact
duplicates). They are ingested in batches of ``--batch-size`` into a fresh workspace.

Stages are driven through the library functions the Dagster assets call (the assets are thin
wrappers, ``assets/``): per batch ``ingest`` (:func:`labelloop.ingest.files.ingest`, the copy into
the inbox, + :func:`labelloop.ingest.scan.scan_batch`, the ``raw_images`` asset), ``prelabels``
(:func:`labelloop.prelabel.stage.prelabel_batch` with the embedded OpenCV pre-labeler), ``review_queue``
(:func:`labelloop.routing.queue.route_batch`), ``review_export`` (:func:`labelloop.review.export.export_batch`);
a simulated reviewer (untimed; ``--no-review`` leaves it out) accepts every exported
pre-annotation and drops a Label Studio JSON export into the review inbox; then after each batch the cross-batch assets ``labels`` (human_labels import + resolve),
``qa_report`` and ``dataset_release`` (files, DVC commit, git tag, push to the workspace's
local DVC remote). Each stage runs in a fresh Python process (``--stage``), which times it and
reads its peak resident memory (``ru_maxrss``) and the same figure just before the stage ran
(imports, workspace open): the difference is the stage's own peak.

The ``ingest`` process first times the bare decode bound on the same files: Pillow
``Image.open`` + ``ImageOps.exif_transpose`` + ``load`` of each file, one core, no writes;
ingest copies each file into the inbox (one read for sha256 and the copy), then raw_images reads
it once more for its sha256 and a decode at 1/k scale (libjpeg DCT scaling, :mod:`labelloop.images.phash`)
for the perceptual hash, and searches duplicates.
``--workers`` > 1 runs raw_images' per-file inspection in that many processes
(``scan_batch(workers=...)``); images/s per core divides by it.

Prints one line per stage and batch, then the ratios: ingest per core / decode bound (target
>= 0.8), 4th batch / 1st batch seconds of each per-batch stage (target <= 1.2), the cross-batch
stages' seconds per batch added and per image held, and the peak memory of each stage per batch.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from labelloop.ingest.scan import scan_batch
from labelloop.prelabel.stage import prelabel_batch
from labelloop.qa.run import run_qa
from labelloop.release.cut import ReleaseBlocked, cut_release
from labelloop.review.export import export_batch
from labelloop.review.importer import import_inbox
from labelloop.review.resolve import resolve_workspace
from labelloop.review.store import review_store
from labelloop.routing.queue import route_batch
from labelloop.workspace import repo

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PER_BATCH = ["ingest", "prelabels", "review_queue", "review_export"]
CROSS = ["labels", "qa_report", "dataset_release"]


# ---- images ---------------------------------------------------------------------------------------
def make_images(dest: Path, n: int, batch_size: int, seed: int = 0, camera_size: bool = False) -> list[Path]:
    """Write ``n`` variants of the bundled photos into ``dest/batch-NN/`` folders of
    ``batch_size`` files; returns the batch folders in order. ``camera_size``: each variant is
    then upsized (bicubic) to 4000 x 3000 px (12 MP, a phone photo's size) with Gaussian noise
    (sigma 6 levels) for sensor-like detail, so files are about 2.6 MB."""
    import numpy as np
    from PIL import Image, ImageOps

    from labelloop.images.files import load_rgb
    from labelloop.images.samples import bundled_photos

    photos = [load_rgb(p) for p in bundled_photos()]
    rng = random.Random(seed)
    made: list[tuple[Path, Image.Image]] = []
    folders = []
    for i in range(n):
        folder = dest / f"batch-{i // batch_size + 1:02d}"
        if i % batch_size == 0:
            folder.mkdir(parents=True, exist_ok=True)
            folders.append(folder)
        u = rng.random()
        if made and u < 0.01:  # exact duplicate: the bytes of an earlier file
            src = rng.choice(made)[0]
            out = folder / f"img-{i:06d}{src.suffix}"
            shutil.copyfile(src, out)
            continue
        if made and u < 0.13:  # near duplicate: an earlier image, 97% size, other JPEG quality
            im = rng.choice(made)[1]
            im = im.resize((max(1, round(im.width * 0.97)), max(1, round(im.height * 0.97))))
        else:
            im = photos[i % len(photos)]
            w, h = im.size
            cw, ch = round(w * rng.uniform(0.5, 1.0)), round(h * rng.uniform(0.5, 1.0))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            im = im.crop((x, y, x + cw, y + ch))
            if rng.random() < 0.5:
                im = ImageOps.mirror(im)
            s = rng.uniform(0.6, 1.2)  # the photos are 427-1000 px on their longer side
            im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
        small = im  # what later near duplicates start from
        if camera_size:
            noise = np.random.default_rng(i).normal(0, 6, (3000, 4000, 3)).astype(np.float32)
            big = np.asarray(im.resize((4000, 3000), Image.BICUBIC), np.float32) + noise
            im = Image.fromarray(np.clip(big, 0, 255).astype(np.uint8))
        if rng.random() < 0.1:
            out = folder / f"img-{i:06d}.png"
            im.save(out)
        else:
            out = folder / f"img-{i:06d}.jpg"
            im.save(out, quality=rng.randint(70, 95))
        made.append((out, small))
    return folders


# ---- one stage in this process ----------------------------------------------------------------------
def maxrss_mb() -> float:
    """Peak resident set size of this process since the last :func:`reset_peak`, MiB: ``VmHWM``
    of /proc/self/status (Linux), else ``ru_maxrss`` (KiB on Linux; since the process started)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """Current resident set size, MiB (``VmRSS``), or the peak where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return maxrss_mb()


def reset_peak() -> None:
    """Reset the peak RSS to the current RSS (``5`` to /proc/self/clear_refs, Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def simulate_review(root: Path, batch: str, n: int) -> Path:
    """Reviewer 3 accepts every pre-annotation of the batch's exported tasks unchanged (an image
    with none becomes a negative): a Label Studio JSON export written into the review inbox."""
    tasks = json.loads((root / "review_out" / batch / "tasks.json").read_text(encoding="utf-8"))
    export = []
    for k, t in enumerate(tasks):
        tid = n * 100_000 + k + 1
        result = [dict(r, origin="prediction") for r in (t.get("predictions") or [{}])[0].get("result", [])]
        export.append({"id": tid, "data": t["data"], "predictions": t.get("predictions", []), "annotations": [{
            "id": tid, "completed_by": 3, "result": result, "was_cancelled": False, "ground_truth": False,
            "created_at": "2026-11-20T10:00:00.000000Z", "updated_at": "2026-11-20T10:00:01.000000Z",
            "lead_time": 5.0, "task": tid, "project": 7}]})
    out = root / "review_inbox" / f"{batch}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(export), encoding="utf-8")
    return out


def decode_bound(files: list[Path]) -> float:
    """Seconds to open + EXIF-transpose + fully decode ``files`` with Pillow (one core)."""
    from PIL import Image, ImageOps

    t = time.perf_counter()
    for f in files:
        with Image.open(f) as im:
            ImageOps.exif_transpose(im).load()
    return time.perf_counter() - t


def run_stage(stage: str, root: Path, batch: str | None, src: Path | None, workers: int) -> dict:
    """Run one stage on the workspace at ``root``; returns its figures (seconds, images, MiB)."""
    import labelloop.formats.cvat.writer
    import labelloop.qa.run
    import labelloop.release.cut  # noqa: E401,F401
    import labelloop.review.files
    import labelloop.review.gold

    # modules the stages import lazily, loaded before the clock starts (steady-state cost)
    import labelloop.routing.active_learning  # noqa: E401,F401
    from labelloop.ingest.files import ingest, list_image_files
    from labelloop.prelabel.backends.opencv import OpenCVPreLabeler
    from labelloop.workspace.layout import Workspace

    ws = Workspace.at(root)
    cfg = ws.config()
    model = OpenCVPreLabeler(cfg)
    out: dict = {"stage": stage, "batch": batch}
    extra: dict = {}
    if stage == "ingest":
        files = list_image_files(src)
        decode_bound(files[:20])  # warm-up: Pillow plugins, page cache
        out["decode_seconds"] = decode_bound(files)
    import gc

    gc.collect()
    reset_peak()
    rss0 = rss_mb()
    t = time.perf_counter()
    if stage == "ingest":
        res = ingest(ws, src, batch)
        out["copy_seconds"] = time.perf_counter() - t
        extra = scan_batch(ws, batch, workers=workers)
        extra.pop("rejects")
        out["images"] = len(res.copied)
    elif stage == "prelabels":
        extra = prelabel_batch(ws, batch, model, run_id="bench")
        extra.pop("failed")
        out["images"] = len(repo.images_to_label(ws, batch))
    elif stage == "review_queue":
        extra = route_batch(ws, batch, model.model_id)
        out["images"] = extra["images"]
    elif stage == "review_export":
        extra = export_batch(ws, batch, model.model_id, set(review_store(ws).latest_reviews()))
        out["images"] = extra["tasks"]
    elif stage == "labels":
        import_inbox(ws)
        extra = resolve_workspace(ws, model.model_id)
        repo.labels_sha256(ws)
        out["images"] = extra["images_resolved"]
    elif stage == "qa_report":
        run_qa(ws, model.model_id)
        out["images"] = len(repo.read_labels(ws)[1])
    elif stage == "dataset_release":
        try:
            r = cut_release(ws, push=True)
            extra = {"status": r["status"], "tag": r.get("tag"), "counts": r.get("counts", {}).get("images")}
        except ReleaseBlocked as exc:
            extra = {"status": f"blocked: {exc}"[:200]}
        out["images"] = len(repo.read_labels(ws)[1])
    else:
        raise ValueError(f"unknown stage {stage!r}")
    out["seconds"] = time.perf_counter() - t
    if stage == "ingest":  # of raw_images' time: reading, decoding (DCT-scaled) and hashing each file
        from labelloop.images.files import phash_file

        t1 = time.perf_counter()
        for f in list_image_files(ws.batch_dir(batch)):
            phash_file(f)
        out["phash_seconds"] = time.perf_counter() - t1
    out.update(rss_before_mb=rss0, rss_peak_mb=maxrss_mb(), extra=extra)
    return out


def stage_in_subprocess(stage: str, root: Path, batch: str | None, src: Path | None, workers: int,
                        in_process: bool = False) -> dict:
    if in_process:  # smoke tests: no fresh process (memory figures then include earlier stages)
        return json.loads(json.dumps(run_stage(stage, root, batch, src, workers)))
    cmd = [sys.executable, __file__, "--stage", stage, "--workspace", str(root), "--workers", str(workers)]
    cmd += ["--batch", batch] if batch else []
    cmd += ["--src", str(src)] if src else []
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} ({batch}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the whole run ----------------------------------------------------------------------------------
def _line(r: dict) -> str:
    n, s = r.get("images") or 0, r["seconds"]
    rate = f"{n / s:8.1f} img/s" if s > 0 and n else " " * 14
    return (f"  {r['stage']:<15} {r['batch'] or 'all':<9} {n:5d} img {s:8.2f} s {rate}  "
            f"peak {r['rss_peak_mb']:6.0f} MiB (stage +{r['rss_peak_mb'] - r['rss_before_mb']:5.0f})")


def summarize(runs: list[dict], batches: list[str], workers: int) -> dict:
    """Print the ratios; returns them as a dict (``ingest_vs_decode``, ``last_vs_first``, ...)."""
    by = {(r["stage"], r["batch"]): r for r in runs}
    out: dict = {"last_vs_first": {}, "cross_per_batch": {}, "peak_mb": {}}
    ing = [by[("ingest", b)] for b in batches]
    n_img = sum(r["images"] for r in ing)
    ingest_rate = n_img / sum(r["seconds"] for r in ing) / workers
    decode_rate = n_img / sum(r["decode_seconds"] for r in ing)
    out["ingest_vs_decode"] = ingest_rate / decode_rate
    print(f"\ningest per core {ingest_rate:.1f} img/s, bare decode bound (Pillow open+exif_transpose+load, "
          f"same files, same processes) {decode_rate:.1f} img/s: x{out['ingest_vs_decode']:.2f} (target >= 0.8)")
    per = {k: 1000 * sum(r[k] for r in ing) / n_img
           for k in ("seconds", "decode_seconds", "phash_seconds", "copy_seconds")}
    scan = per["seconds"] - per["copy_seconds"]
    print(f"  per image: ingest {per['seconds']:.2f} ms = copy into the inbox (one read, sha256, atomic write) "
          f"{per['copy_seconds']:.2f} ms + raw_images {scan:.2f} ms, of which read + DCT-scaled decode + "
          f"perceptual hash {per['phash_seconds']:.2f} ms (the decode bound: {per['decode_seconds']:.2f} ms) and "
          f"sha256, rows, duplicate search {scan - per['phash_seconds']:.2f} ms")
    first, last = batches[0], batches[-1]
    for st in PER_BATCH:
        if (st, first) in by and (st, last) in by:
            a, b = by[(st, first)], by[(st, last)]
            ra = (b["seconds"] / b["images"]) / (a["seconds"] / a["images"]) if a["images"] and b["images"] else None
            out["last_vs_first"][st] = b["seconds"] / a["seconds"]
            print(f"{st:<15} batch {len(batches)} / batch 1: x{b['seconds'] / a['seconds']:.2f} seconds"
                  + (f", x{ra:.2f} per image" if ra else "") + " (target <= 1.2)")
    for st in CROSS:
        rs = [by[(st, b)] for b in batches if (st, b) in by]
        if not rs:
            continue
        held = [r["images"] for r in rs]
        out["cross_per_batch"][st] = [r["seconds"] for r in rs]
        print(f"{st:<15} after each batch: " + ", ".join(f"{r['seconds']:.2f} s" for r in rs)
              + "  per image held: " + ", ".join(f"{1000 * r['seconds'] / max(h, 1):.2f} ms" for r, h in zip(rs, held)))
    print("peak memory per stage and batch (MiB, whole process / the stage's own increase):")
    for st in PER_BATCH + CROSS:
        rs = [by[(st, b)] for b in batches if (st, b) in by]
        if rs:
            out["peak_mb"][st] = [r["rss_peak_mb"] for r in rs]
            print(f"  {st:<15} " + "  ".join(f"{r['rss_peak_mb']:.0f}/+{r['rss_peak_mb'] - r['rss_before_mb']:.0f}"
                                             for r in rs))
    return out


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--camera-size", action="store_true", help="upsize every image to 4000x3000 with noise (12 MP)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1, help="processes for raw_images' per-file inspection")
    ap.add_argument("--skip-prelabel", action="store_true", help="no prelabels: routing sends every image to review")
    ap.add_argument("--no-review", action="store_true", help="no simulated reviewer between export and labels")
    ap.add_argument("--work-dir", help="keep the images and workspace here (default: a temporary folder)")
    ap.add_argument("--prelabels-from", help="workspace of an earlier run with the same --images and --batch-size: "
                    "copy its predictions in, so the prelabels stage finds them done (re-measure the other stages)")
    ap.add_argument("--in-process", action="store_true", help="run the stages in this process (smoke tests)")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--workspace", help=argparse.SUPPRESS)
    ap.add_argument("--batch", help=argparse.SUPPRESS)
    ap.add_argument("--src", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.stage:
        print(json.dumps(run_stage(a.stage, Path(a.workspace), a.batch, Path(a.src) if a.src else None, a.workers)))
        return None
    import logging

    logging.getLogger("dvc").setLevel(logging.ERROR)
    from labelloop.workspace.init import init_workspace
    from labelloop.workspace.layout import Workspace

    tmp = None if a.work_dir else tempfile.TemporaryDirectory(prefix="pipeline-scale-")
    work = Path(a.work_dir or tmp.name)
    try:
        t = time.perf_counter()
        folders = make_images(work / "source", a.images, a.batch_size, camera_size=a.camera_size)
        print(f"{a.images} images from the bundled photos in {len(folders)} batches of {a.batch_size} "
              f"({time.perf_counter() - t:.1f} s to make); workers {a.workers}; {os.cpu_count()} CPUs")
        root = work / "workspace"
        init_workspace(Workspace.at(root))
        runs, batches = [], []
        stages = [s for s in PER_BATCH if not (a.skip_prelabel and s == "prelabels")]
        for folder in folders:
            b = folder.name
            batches.append(b)
            for st in stages:
                if st == "prelabels" and a.prelabels_from:  # same images (same seed): predictions kept
                    src = Path(a.prelabels_from) / "tables" / "prelabels" / b
                    if src.is_dir():
                        shutil.copytree(src, root / "tables" / "prelabels" / b, dirs_exist_ok=True)
                runs.append(stage_in_subprocess(st, root, b, folder if st == "ingest" else None, a.workers,
                                                a.in_process))
                print(_line(runs[-1]), flush=True)
            if not a.no_review and (root / "review_out" / b / "tasks.json").is_file():
                simulate_review(root, b, len(batches))
            for st in CROSS:
                runs.append(stage_in_subprocess(st, root, b, None, a.workers, a.in_process))
                print(_line(runs[-1]) + (f"  {runs[-1]['extra'].get('status')}" if st == "dataset_release" else ""),
                      flush=True)
        return summarize(runs, batches, a.workers)
    finally:
        if tmp:
            tmp.cleanup()


if __name__ == "__main__":
    main()
