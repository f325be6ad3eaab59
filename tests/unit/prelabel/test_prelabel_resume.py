"""The foundation backend in a workspace: resume after a crash computes only the missing images,
out-of-memory halves the batch and retries the same images, a new model_id adds a prediction
set without touching the old one, and the `prelabels` asset runs it through Dagster."""

from __future__ import annotations

from collections import Counter

import dagster as dg
import pytest
import torch

from labelloop.prelabel.backends.foundation import FoundationPreLabeler
from labelloop.prelabel.stage import prelabel_batch
from labelloop.workspace import repo
from support.foundation import NAMES, models, workspace  # noqa: F401 (models is a fixture)
from support.helpers import cli


class Crash(RuntimeError):
    pass


def key(p):
    return (p["prediction_id"], p["image_id"], p["category"], tuple(p["bbox"]), p["score"], p["mask"])


def test_resume_after_a_crash_computes_only_the_missing_images(tmp_path, models):
    ws = workspace(tmp_path, "ws", models)
    model = FoundationPreLabeler(ws.config(), ws.root)
    real, calls = model.run_batch, []

    def crashing(batch):  # the real models, until the 3rd batch: then the process "dies"
        calls.append(list(batch.indices))
        if len(calls) == 3:
            raise Crash("killed")
        return real(batch)

    model.run_batch = crashing
    with pytest.raises(Crash):
        prelabel_batch(ws, "b1", model, run_id="r1", chunk_size=2)
    folder = repo.prelabel_dir(ws, "b1", model.model_id)
    assert len(list(folder.glob("part-*.parquet"))) == 2 and not list(folder.glob(".tmp-*"))
    model.run_batch = real
    s = prelabel_batch(ws, "b1", model, run_id="r2", chunk_size=2)
    assert (s["images_cached"], s["images_predicted"], s["failed"]) == (4, 2, [])
    assert s["model_id"] == model.model_id and s["device"] == "cpu"
    preds = repo.batch_predictions(ws, "b1", model.model_id)
    assert not [k for k, n in Counter(p["prediction_id"] for p in preds).items() if n > 1]
    assert {p["checkpoint_sha256"] for p in preds} == {model.checkpoint_sha256}
    assert {p["run_id"] for p in preds} == {"r1", "r2"}
    # the same rows as one uninterrupted run in a fresh workspace
    fresh = workspace(tmp_path, "fresh", models)
    prelabel_batch(fresh, "b1", FoundationPreLabeler(fresh.config(), fresh.root), run_id="r", chunk_size=2)
    assert sorted(map(key, preds)) == sorted(map(key, repo.batch_predictions(fresh, "b1", model.model_id)))
    # nothing left to do
    again = prelabel_batch(ws, "b1", model, run_id="r3", chunk_size=2)
    assert (again["images_cached"], again["images_predicted"], again["predictions_new"]) == (6, 0, 0)
    # new inference settings: a new prediction set, the old one untouched byte for byte
    before = {p.name: p.read_bytes() for p in folder.glob("part-*.parquet")}
    cfg = ws.config()
    cfg.prelabeler.detector.box_threshold = 0.6
    other = FoundationPreLabeler(cfg, ws.root)
    assert other.model_id != model.model_id
    s2 = prelabel_batch(ws, "b1", other, run_id="r4", chunk_size=2)
    assert s2["images_predicted"] == 6 and repo.prelabel_dir(ws, "b1", other.model_id) != folder
    assert {p.name: p.read_bytes() for p in folder.glob("part-*.parquet")} == before
    assert all(p["score"] >= 0.6 for p in repo.batch_predictions(ws, "b1", other.model_id))


def _guard(module, limit, *, width_over=None):
    """A forward pre-hook that raises torch.OutOfMemoryError as the CUDA allocator would when
    the batch is larger than ``limit`` (or an input is wider than ``width_over`` pixels)."""
    def hook(mod, args, kwargs):
        x = kwargs.get("pixel_values", args[0] if args else None)
        if x.shape[0] > limit or (width_over and x.shape[-1] > width_over):
            raise torch.OutOfMemoryError(f"CUDA out of memory (simulated: batch {x.shape[0]}, width {x.shape[-1]})")
    return module.register_forward_pre_hook(hook, with_kwargs=True)


def test_out_of_memory_halves_the_batch_and_retries_the_same_images(tmp_path, models):
    ws = workspace(tmp_path, "ws", models)
    paths = [ws.root / "inbox" / "b1" / n for n in NAMES]
    reference = list(FoundationPreLabeler(ws.config(), ws.root).predict_files(paths))  # batch_size 2
    cfg = ws.config()
    cfg.prelabeler.batch_size = 4
    m = FoundationPreLabeler(cfg, ws.root)
    det, seg = m.load()
    handle = _guard(det.model, limit=2)
    try:
        got = list(m.predict_files(paths))
    finally:
        handle.remove()
    assert got == reference  # same images, same batches of 2 as the reference run
    assert m.halving.events == [(4, 2)] and m.halving.batch_size == 2
    # the segmenter's encoder runs out too: down to one image per batch
    one = ws.config()
    one.prelabeler.batch_size = 1
    reference1 = list(FoundationPreLabeler(one, ws.root).predict_files(paths))
    m2 = FoundationPreLabeler(cfg, ws.root)
    _, seg2 = m2.load()
    _guard(seg2.model.image_encoder, limit=1)
    assert list(m2.predict_files(paths)) == reference1
    assert m2.halving.events == [(4, 2), (2, 1)] and m2.halving.batch_size == 1


def test_an_image_that_does_not_fit_alone_is_reported_not_fatal(tmp_path, models):
    ws = workspace(tmp_path, "ws", models, batch_size=1)
    m = FoundationPreLabeler(ws.config(), ws.root)
    det, _ = m.load()
    # the 3:2 photos (chelsea 451 x 300, coffee 600 x 400, rocket 640 x 427) are resized to 144 x 96
    _guard(det.model, limit=1, width_over=140)
    s = prelabel_batch(ws, "b1", m, run_id="r1", chunk_size=2)
    assert s["images_predicted"] == 3
    assert sorted(f.split(": ")[0] for f in s["failed"]) == ["chelsea.png", "coffee.png", "rocket.jpg"]
    assert all("out of memory" in f and "batch size 1" in f for f in s["failed"])
    # they are not recorded as done: a later run (more memory) computes just those images
    assert len(repo.done_image_ids(repo.prelabel_dir(ws, "b1", m.model_id))) == 3
    s2 = prelabel_batch(ws, "b1", FoundationPreLabeler(ws.config(), ws.root), run_id="r2", chunk_size=2)
    assert (s2["images_cached"], s2["images_predicted"], s2["failed"]) == (3, 3, [])


def test_prelabels_asset_runs_the_foundation_backend_in_dagster(tmp_path, models):
    ws = workspace(tmp_path, "ws", models, num_workers=1)
    out = cli(ws.root, "run")
    assert "batch b1 [ran:" in out.output
    model = FoundationPreLabeler(ws.config(), ws.root)
    preds = repo.batch_predictions(ws, "b1", model.model_id)
    assert preds and {p["model_id"] for p in preds} == {model.model_id}
    assert any(p["mask"] for p in preds if p["category"] in ("person", "cat"))
    assert not any(p["mask"] for p in preds if p["category"] == "face")
    from pipelines.runner import get_instance

    ev = get_instance(ws).fetch_materializations(dg.AssetKey("prelabels"), limit=1).records[0]
    meta = {k: v.value for k, v in ev.asset_materialization.metadata.items()}
    assert meta["model_id"] == model.model_id and meta["device"] == "cpu" and meta["images_predicted"] == 6
    assert meta["images_per_second"] > 0 and meta["compute_dtype"] == "float32" and meta["oom_halvings"] == 0
    assert meta["checkpoint_sha256"] == model.checkpoint_sha256
