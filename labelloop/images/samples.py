"""Real photographs shipped inside installed packages, used by ``labelloop demo`` and tests.

scikit-image's data folder (astronaut, camera, chelsea, coffee, coins, rocket, motorcycle
left/right, hubble deep field), matplotlib's grace_hopper.jpg, scikit-learn's china.jpg and
flower.jpg. Package data, Label Studio 1.23 JSON exports referencing ``photos/<file name>``
(who drew what and how: ``labelloop/data/README.md``): ``demo_review.json`` holds hand-drawn
boxes for all of them (project 7, reviewer 3), ``demo_review_second.json`` a second reviewer's
boxes for four of them (project 7, reviewer 5: a double review), ``demo_gold.json`` the gold set
(project 8: camera, chelsea, coins, grace_hopper; 5 objects) and ``demo_review_careless.json`` a
careless re-review of the gold photos (project 7, reviewer 9: boxes on the wrong things).
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

SKIMAGE = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "rocket.jpg",
           "motorcycle_left.png", "motorcycle_right.png", "hubble_deep_field.jpg"]


def bundled_photos() -> list[Path]:
    """Paths of the bundled photos, in a fixed order.

    Raises:
        FileNotFoundError: a photo is missing from its package (names the expected path).
    """
    import matplotlib  # heavy: only when a figure is drawn
    import skimage  # heavy: only when the bundled photos are staged
    import sklearn.datasets  # heavy: only when the bundled photos are staged

    sk = Path(skimage.__file__).parent / "data"
    paths = [sk / n for n in SKIMAGE]
    paths.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    paths += [Path(sklearn.datasets.__file__).parent / "images" / n for n in ("china.jpg", "flower.jpg")]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"bundled photo missing: expected {p} (reinstall scikit-image / matplotlib / scikit-learn)")
    return paths


def stage_photos(dest: Path) -> Path:
    """Copy the bundled photos into ``dest/photos/`` and return that folder."""
    out = Path(dest) / "photos"
    out.mkdir(parents=True, exist_ok=True)
    for p in bundled_photos():
        shutil.copyfile(p, out / p.name)
    return out


def _data(name: str) -> Path:
    return Path(str(resources.files("labelloop.data").joinpath(name)))


def demo_review_path() -> Path:
    """The hand-made Label Studio JSON export of the bundled photos (package data)."""

    return _data("demo_review.json")


def demo_second_review_path() -> Path:
    """A second reviewer's hand-made Label Studio JSON export of four bundled photos (astronaut,
    chelsea, coffee, motorcycle_left): with :func:`demo_review_path`, a double review."""

    return _data("demo_review_second.json")


def demo_gold_path() -> Path:
    """The demo's gold set, a Label Studio JSON export drawn by hand: camera, chelsea,
    grace_hopper (5 objects) and coins (a trusted negative)."""

    return _data("demo_gold.json")


def demo_careless_review_path() -> Path:
    """A careless re-review of the gold photos (Label Studio JSON export, visibly wrong boxes):
    the demo imports it last, and the reviewer-vs-gold gate blocks its release."""

    return _data("demo_review_careless.json")
