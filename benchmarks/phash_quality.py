"""How the stored perceptual hash (labelloop.images.phash) compares with the full-resolution one.

    python benchmarks/phash_quality.py --images 500 --pairs 250

Images: ``--images`` variants of the bundled photos made as ``benchmarks/pipeline_scale.py``
makes them (crops, flips, 60-120% resizes, JPEG recompression, 1 in 10 PNG). For each image it
computes the stored hash (:func:`labelloop.images.files.phash_file`, method
:data:`labelloop.images.phash.PHASH_METHOD`) and the legacy one (``imagehash.phash`` of the full decoded
image, rows without ``phash_method``). Near-duplicate pairs: the first ``--pairs`` images, each
resized to 97% and saved as JPEG at another quality (70-95), as the generator's near duplicates.

Prints, for both hashes: the share of hashes equal to the legacy hash and the bit drift; the
Hamming distance of each near-duplicate pair (share within ``--threshold`` bits, mean, max); and
how many of the other pairs (every two generated images) fall within the threshold and within
threshold + 2 (they are crops and rescales of 12 source photos, so some are related); plus the
seconds per image of each hash (decode included, one core).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _hamming_matrix(hashes: list[str]):
    import numpy as np

    h = np.array([int(x, 16) for x in hashes], dtype=np.uint64)
    x = h[:, None] ^ h[None, :]
    bits = np.unpackbits(x.view(np.uint8).reshape(len(h), len(h), 8), axis=2).sum(axis=2)
    return bits[np.triu_indices(len(h), k=1)]


def main(argv: list[str] | None = None) -> dict:
    import imagehash
    import numpy as np
    from pipeline_scale import make_images

    from labelloop.images.files import load_rgb, phash_file
    from labelloop.images.phash import PHASH_METHOD, hamming

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--pairs", type=int, default=250)
    ap.add_argument("--threshold", type=int, default=4, help="near-duplicate distance (images.near_duplicate_distance)")
    ap.add_argument("--work-dir", type=Path, default=None)
    a = ap.parse_args(argv)
    work = a.work_dir or Path(tempfile.mkdtemp(prefix="phash-quality-"))
    (folder,) = make_images(work / "images", a.images, a.images)
    files = sorted(folder.iterdir())
    rng = random.Random(1)
    pairs = []
    for i, f in enumerate(files[: a.pairs]):
        im = load_rgb(f)
        g = work / "pairs" / f"p{i:05d}.jpg"
        g.parent.mkdir(parents=True, exist_ok=True)
        im.resize((max(1, round(im.width * 0.97)), max(1, round(im.height * 0.97)))).save(g, quality=rng.randint(70, 95))
        pairs.append((f, g))

    def legacy(p) -> str:
        return str(imagehash.phash(load_rgb(p)))

    out = {}
    for name, fn in (("legacy (full image)", legacy), (f"stored ({PHASH_METHOD})", phash_file)):
        t = time.process_time()
        hashes = [fn(f) for f in files]
        per_image = (time.process_time() - t) / len(files)
        out[name] = {"hashes": hashes, "ms_per_image": 1000 * per_image,
                     "pair": np.array([hamming(fn(x), fn(y)) for x, y in pairs])}
    ref = out["legacy (full image)"]["hashes"]
    print(f"{len(files)} images, {len(pairs)} near-duplicate pairs (97% size, other JPEG quality), "
          f"threshold {a.threshold} bits")
    for name, r in out.items():
        drift = np.array([hamming(x, y) for x, y in zip(r["hashes"], ref)])
        others = _hamming_matrix(r["hashes"])
        r.update(same=float((drift == 0).mean()), drift_mean=float(drift.mean()), drift_max=int(drift.max()),
                 recall=float((r["pair"] <= a.threshold).mean()), pair_mean=float(r["pair"].mean()),
                 pair_max=int(r["pair"].max()), others_within=int((others <= a.threshold).sum()),
                 others_within2=int((others <= a.threshold + 2).sum()), others=int(others.size))
        print(f"  {name:42s} equal to legacy {r['same']:.0%}, drift mean {r['drift_mean']:.2f} max {r['drift_max']} | "
              f"pairs within {a.threshold}: {r['recall']:.1%} (mean {r['pair_mean']:.2f}, max {r['pair_max']}) | "
              f"other pairs within {a.threshold}: {r['others_within']}, within {a.threshold + 2}: "
              f"{r['others_within2']} of {r['others']} | {r['ms_per_image']:.2f} ms per image")
    return {k: {kk: v for kk, v in r.items() if kk not in ("hashes", "pair")} for k, r in out.items()}


if __name__ == "__main__":
    main()
