"""Smoke tests: each scaling benchmark's main function runs end to end on tiny sizes (no
figures are checked: the benchmarks print them; these only keep the scripts from rotting)."""

from __future__ import annotations

import importlib.util
import sys

from support.helpers import REPO_ROOT

BENCH = REPO_ROOT / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_pipeline_scale_runs(tmp_path, capsys):
    out = _load("pipeline_scale").main(["--images", "6", "--batch-size", "3", "--skip-prelabel", "--in-process",
                                        "--work-dir", str(tmp_path)])
    text = capsys.readouterr().out
    assert "ingest per core" in text and "dataset_release" in text
    assert set(out["last_vs_first"]) == {"ingest", "review_queue", "review_export"}
    assert out["ingest_vs_decode"] > 0 and len(out["cross_per_batch"]["labels"]) == 2


def test_dvc_release_scale_runs(tmp_path, capsys):
    out = _load("dvc_release_scale").main(["--files", "30", "--shard-mb", "0.02", "--no-push",
                                           "--work-dir", str(tmp_path)])
    assert out["files"]["files"] == 30 and out["shards"]["files"] > 1  # shards + index.parquet
    assert "dvc commit" in capsys.readouterr().out


def test_phash_quality_runs(tmp_path, capsys):
    out = _load("phash_quality").main(["--images", "12", "--pairs", "4", "--work-dir", str(tmp_path)])
    legacy = out["legacy (full image)"]
    assert legacy["same"] == 1.0 and legacy["drift_max"] == 0 and legacy["others"] == 66
    assert all(r["recall"] == 1.0 for r in out.values())  # 97% recompressions stay within 4 bits
    assert "near-duplicate pairs" in capsys.readouterr().out


def test_sam3_prelabel_throughput_smoke(tmp_path, capsys):
    """``prelabel_throughput.py --backend sam3`` end to end with the tiny SAM 3 (the full-size run
    never happens in the test suite); its last line is the benchmark's usual one."""
    rc = _load("prelabel_throughput").main(["--backend", "sam3", "--sam3-size", "test", "--device", "cpu",
                                            "--num-images", "2", "--batch-size", "2", "--num-workers", "0",
                                            "--work-dir", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and lines[-1].startswith("stage/raw ") and " stage/naive " in lines[-1]
    assert "stage_img_per_s" in lines[-1] and any(ln.startswith("naive ") for ln in lines)
