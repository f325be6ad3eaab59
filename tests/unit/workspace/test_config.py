"""Project settings (labelloop.workspace.config): the shipped default, validation errors, thresholds()."""

from __future__ import annotations

import pytest
import yaml

from labelloop.workspace.config import DEFAULT_CONFIG, ConfigError, ProjectConfig, Thresholds, load_config
from labelloop.workspace.init import package_text

ONE_CAT = "categories:\n  - {name: person, detector: opencv-hog-person}\n"


def write(tmp_path, text: str, name: str = "labelloop.yaml", encoding: str = "utf-8"):
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


def error_of(path) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return str(exc.value)


def test_shipped_default_loads():
    assert DEFAULT_CONFIG.read_text(encoding="utf-8") == package_text("labelloop.yaml")
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.project == "demo"
    assert cfg.category_names == ["person", "face", "cat"]
    assert [(c.detector, c.masks) for c in cfg.categories] == [
        ("opencv-hog-person", True), ("opencv-haar-frontalface_default", False),
        ("opencv-haar-frontalcatface", True)]
    assert cfg.category("face").prompt == "a human face"
    assert cfg.thresholds("face") == Thresholds(low=0.3, high=0.75)
    assert cfg.thresholds("person") == cfg.thresholds("cat") == Thresholds(low=0.3, high=0.8)
    assert (cfg.routing.qa_sample_rate, cfg.routing.seed) == (0.1, 0)
    assert (cfg.images.max_pixels, cfg.images.near_duplicate_distance) == (50_000_000, 4)
    assert cfg.qa.model_dump() == {"audit_error_target": 0.02, "confidence": 0.95, "accept_iou": 0.95,
                                   "audit_move_iou": 0.75,
                                   # gold set, agreement and label-error settings
                                   "strict": False, "gold_mean_iou": 0.5, "gold_mean_iou_strict": 0.75,
                                   "gold_class_accuracy": 0.95, "kappa_min": 0.8, "kappa_guidelines": 0.6,
                                   "honeypots_per_batch": 2, "bootstrap_resamples": 2000,
                                   "label_error_threshold": 0.25, "max_suspects": 50}
    assert cfg.routing.calibrated_policy is None
    assert (cfg.cost.box_per_object, cfg.calibration.precision_target) == (0.06, 0.98)
    assert cfg.release.model_dump() == {"train": 0.8, "val": 0.1, "test": 0.1, "yolo_task": "detect",
                                        "shard_mb": None}  # release splits; shard_mb: tar shards
    assert cfg.prelabeler.model_dump() == {"backend": "opencv", "device": "cpu", "max_side": 800,
                                           "grabcut_iterations": 3, "detector": None, "segmenter": None, "sam3": None,
                                           "rtdetrv2": None,
                                           "batch_size": 8, "num_workers": 2, "dtype": "auto", "chunk_size": 200}


def test_minimal_file_takes_the_defaults(tmp_path):
    cfg = load_config(write(tmp_path, ONE_CAT))
    assert cfg.project == "labelloop"
    assert cfg.thresholds("person") == Thresholds(low=0.3, high=0.8)
    assert (cfg.routing.qa_sample_rate, cfg.routing.seed, cfg.prelabeler.max_side) == (0.1, 0, 800)


INVALID = [
        ("categories:\n  - {name: person, detector: hog}\n"
         "  - {name: face, detector: haar, thresholds: {low: 0.9, high: 0.5}}\n",
         "categories.1.thresholds: Value error, low (0.9) must be <= high (0.5)"),
        (ONE_CAT + "routing: {defaults: {low: 0.9, high: 0.2}}\n",
         "routing.defaults: Value error, low (0.9) must be <= high (0.2)"),
        # high alone below the default low (0.3)
        ("categories:\n  - {name: face, detector: haar, thresholds: {high: 0.2}}\n",
         "categories.0.thresholds: Value error, low (0.3) must be <= high (0.2)"),
        (ONE_CAT + "routing: {sample_rate: 0.2}\n", "routing.sample_rate: Extra inputs are not permitted"),
        ("categories:\n  - {name: person, detector: hog, colour: red}\n",
         "categories.0.colour: Extra inputs are not permitted"),
        (ONE_CAT + "extra_section: 1\n", "extra_section: Extra inputs are not permitted"),
        (ONE_CAT + "routing: {qa_sample_rate: 1.5}\n",
         "routing.qa_sample_rate: Input should be less than or equal to 1"),
        ("categories:\n  - {name: face, detector: haar, thresholds: {low: -0.1}}\n",
         "categories.0.thresholds.low: Input should be greater than or equal to 0"),
        (ONE_CAT + "routing: {seed: abc}\n",
         "routing.seed: Input should be a valid integer, unable to parse string as an integer"),
        (ONE_CAT + "release: {train: 0.5, val: 0.1, test: 0.1}\n", "release: Value error, train + val + test must be 1"),
        (ONE_CAT + "prelabeler: {backend: torch}\n", "prelabeler.backend: Input should be 'opencv', 'foundation', 'sam3' or 'rtdetrv2'"),
        (ONE_CAT + "images: {max_pixels: 0}\n", "images.max_pixels: Input should be greater than 0"),
        # was accepted, then the release died on int(inf * 2**20) (OverflowError)
        (ONE_CAT + "release: {shard_mb: .inf}\n", "release.shard_mb: Input should be a finite number"),
        ("project: x\n", "categories: Field required"),
        ("categories:\n  - {name: '', detector: hog}\n",
         "categories.0.name: String should have at least 1 character"),
]


@pytest.mark.parametrize("text, problem", INVALID, ids=[p.split(":")[0] for _, p in INVALID])
def test_invalid_value_names_file_and_key_path(tmp_path, text, problem):
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}: {problem}"


def test_two_problems_are_both_reported(tmp_path):
    path = write(tmp_path, ONE_CAT + "routing: {qa_sample_rate: 2, seed: x}\n")
    assert error_of(path) == (f"{path}: routing.qa_sample_rate: Input should be less than or equal to 1; "
                              "routing.seed: Input should be a valid integer, unable to parse string as an integer")


def test_duplicate_category_names(tmp_path):
    path = write(tmp_path, "categories:\n  - {name: person, detector: hog}\n  - {name: person, detector: hog2}\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}: ")
    assert msg.endswith("category names must be unique: ['person', 'person']")


@pytest.mark.parametrize("text", ["categories:\n  - {name: person, detector: hog}\n  - {name: person, detector: x}\n",
                                  "categories: []\n"], ids=["duplicate", "empty"])
def test_category_list_errors_name_the_categories_key(tmp_path, text):
    path = write(tmp_path, text)
    assert error_of(path).startswith(f"{path}: categories: ")


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "42\n"], ids=["list", "str", "empty", "int"])
def test_non_mapping_yaml(tmp_path, text):
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}: expected a mapping at the top level"


def test_missing_file(tmp_path):
    path = tmp_path / "nope" / "labelloop.yaml"
    assert error_of(path) == f"{path}: not found (run `labelloop init` to create a workspace)"


def test_bad_yaml(tmp_path):
    path = write(tmp_path, "categories: [a\n")
    msg = error_of(path)
    assert msg.startswith(f"{path}: not valid YAML: while parsing a flow sequence")
    assert "line 1, column 13" in msg


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = write(tmp_path, "project: café\n" + ONE_CAT, encoding="latin-1")
    assert error_of(path).startswith(f"{path}: ")


def test_negative_release_fraction_is_rejected(tmp_path):
    path = write(tmp_path, ONE_CAT + "release: {train: 1.5, val: -0.25, test: -0.25}\n")
    assert error_of(path).startswith(f"{path}: release.")


def test_thresholds_fall_back_to_defaults():
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["routing"]["defaults"] = {"low": 0.2, "high": 0.9}
    cfg = ProjectConfig.model_validate(raw)
    assert cfg.thresholds("person") is cfg.routing.defaults
    assert cfg.thresholds("cat") == Thresholds(low=0.2, high=0.9)
    assert cfg.thresholds("face") == Thresholds(low=0.3, high=0.75)  # its own thresholds win
    with pytest.raises(KeyError):
        cfg.thresholds("dog")
    with pytest.raises(KeyError):
        cfg.category("dog")


def test_threshold_bounds_are_inclusive(tmp_path):
    cfg = load_config(write(tmp_path, "categories:\n  - {name: f, detector: h, thresholds: {low: 0.5, high: 0.5}}\n"
                                      "routing: {defaults: {low: 0, high: 1}, qa_sample_rate: 0}\n"))
    assert cfg.thresholds("f") == Thresholds(low=0.5, high=0.5)
    assert cfg.routing.defaults == Thresholds(low=0.0, high=1.0)
    assert cfg.routing.qa_sample_rate == 0.0
