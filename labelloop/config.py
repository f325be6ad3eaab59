"""Project settings: ``labelloop.yaml`` at the workspace root.

The file is validated with pydantic; a bad file raises :class:`ConfigError` naming the file and
the offending key. Routing thresholds form a *policy* whose id (:meth:`ProjectConfig.policy_id`)
is a hash of the values, stored on every routed row, so a label can be traced to the
thresholds that routed it. Changing them re-routes without re-running the models.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

CONFIG_FILE = "labelloop.yaml"


class ConfigError(ValueError):
    """``labelloop.yaml`` is missing, not YAML, or has an invalid value (message names both)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Thresholds(_Strict):
    """Score thresholds in [0, 1]: below ``low`` a prediction is dropped; an image whose kept
    predictions are all >= ``high`` is auto-accepted, otherwise it goes to human review."""

    low: float = Field(0.3, ge=0.0, le=1.0)
    high: float = Field(0.8, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        return self


class Category(_Strict):
    """One class of the ontology: its detector, text prompt and whether it needs masks."""

    name: str = Field(min_length=1)
    detector: str = Field(description="detector key of the pre-labeler backend, e.g. opencv-hog-person")
    prompt: str | None = Field(None, description="text prompt for open-vocabulary detectors")
    masks: bool = False
    thresholds: Thresholds | None = None


class Routing(_Strict):
    defaults: Thresholds = Thresholds()
    qa_sample_rate: float = Field(0.10, ge=0.0, le=1.0, description="share of auto-accepted images audited")
    seed: int = 0


class Images(_Strict):
    max_pixels: int = Field(50_000_000, gt=0, description="larger decoded images are rejected")
    near_duplicate_distance: int = Field(4, ge=0, le=64, description="phash Hamming distance k")


class QA(_Strict):
    audit_error_target: float = Field(0.02, gt=0.0, lt=1.0)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)
    accept_iou: float = Field(0.95, gt=0.0, le=1.0, description="IoU at or above which a reviewed box counts as accepted")
    audit_move_iou: float = Field(0.75, gt=0.0, le=1.0, description="a moved auto label below this IoU is an error")


class Release(_Strict):
    train: float = Field(0.8, ge=0.0, le=1.0)
    val: float = Field(0.1, ge=0.0, le=1.0)
    test: float = Field(0.1, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sum(self):
        if abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise ValueError("train + val + test must be 1")
        return self


class PreLabeler(_Strict):
    backend: Literal["opencv"] = "opencv"
    device: str = "cpu"
    max_side: int = Field(800, gt=0, description="images are downscaled to this longest side for detection")
    grabcut_iterations: int = Field(3, ge=1)


class ProjectConfig(_Strict):
    """The whole ``labelloop.yaml``."""

    project: str = "labelloop"
    categories: list[Category]
    routing: Routing = Routing()
    images: Images = Images()
    qa: QA = QA()
    release: Release = Release()
    prelabeler: PreLabeler = PreLabeler()

    @field_validator("categories")
    @classmethod
    def _unique(cls, categories: list[Category]) -> list[Category]:
        names = [c.name for c in categories]
        if not names:
            raise ValueError("at least one category is required")
        if len(set(names)) != len(names):
            raise ValueError(f"category names must be unique: {names}")
        return categories

    def category(self, name: str) -> Category:
        for c in self.categories:
            if c.name == name:
                return c
        raise KeyError(name)

    def thresholds(self, category: str) -> Thresholds:
        c = self.category(category)
        return c.thresholds or self.routing.defaults

    @property
    def category_names(self) -> list[str]:
        return [c.name for c in self.categories]

    def policy_id(self) -> str:
        """Routing policy id: ``policy-`` + 12 hex of sha256 over the thresholds per category,
        the QA sample rate and its seed (canonical JSON)."""
        body = {
            "thresholds": {c.name: self.thresholds(c.name).model_dump() for c in self.categories},
            "qa_sample_rate": self.routing.qa_sample_rate,
            "seed": self.routing.seed,
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        return f"policy-{digest[:12]}"


DEFAULT_CONFIG = Path(__file__).with_name("data") / "labelloop.yaml"


def load_config(path: str | Path) -> ProjectConfig:
    """Load and validate ``labelloop.yaml``.

    Raises:
        ConfigError: the file is missing, not valid YAML, or a value is invalid; the message
            names the file and the key path (e.g. ``categories.0.thresholds.low``).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run `labelloop init` to create a workspace)") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
