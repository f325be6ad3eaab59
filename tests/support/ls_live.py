"""Helpers of tests/live/test_labelstudio_live.py: the photos, the environment of the live review
tool, the state the module's fixtures share, and readers of the review store."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import string
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

from labelloop.review.live.server import LabelStudioServer
from labelloop.review.store import review_store
from labelloop.workspace.layout import Workspace
from support.helpers import skimage_data


def photos(dest: Path) -> Path:
    import matplotlib

    dest.mkdir(parents=True, exist_ok=True)
    for n in ("astronaut.png", "coins.png", "rocket.jpg"):
        shutil.copyfile(skimage_data() / n, dest / n)
    shutil.copyfile(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg", dest / "grace_hopper.jpg")
    return dest


@contextlib.contextmanager
def server_env(ls, token: str | None = None):
    """The live review tool's environment, as a user sets it, for the duration of the block."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LABEL_STUDIO_URL", ls.url)
        mp.setenv("LABEL_STUDIO_API_KEY", token or ls.admin_token)
        mp.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(ls.document_root))
        mp.delenv("LABEL_STUDIO_PROJECT_TITLE", raising=False)
        mp.delenv("LABEL_STUDIO_WORKSPACE_PATH", raising=False)
        yield


@dataclass
class Live:
    ws: Workspace
    ls: object  # conftest.LabelStudioInstance
    push_output: str
    project_id: int
    source: str
    title: str
    tasks: dict  # source_path -> SDK task (with predictions), as pushed
    images: dict  # source_path -> IMAGES row
    exported: dict  # prediction_id -> EXPORTED_PREDICTIONS row
    notes: dict = field(default_factory=dict)

    def server(self, token: str | None = None) -> LabelStudioServer:
        return LabelStudioServer(self.ls.url, token or self.ls.admin_token)


def region_id() -> str:
    return "".join(random.Random(7).choices(string.ascii_letters + string.digits, k=10))


def regions(task) -> dict[str, dict]:
    """Prediction regions of a task by class, highest score first: {category: [region, ...]}."""
    out: dict[str, list] = {}
    for r in sorted(task["predictions"][0]["result"], key=lambda r: -r["score"]):
        labels = r["value"].get("rectanglelabels") or r["value"].get("brushlabels")  # masks go as brush regions
        out.setdefault(labels[0], []).append(json.loads(json.dumps(r)))
    return out


def px(value: dict, w: int, h: int) -> list[float]:
    return [value["x"] * w / 100, value["y"] * h / 100, (value["x"] + value["width"]) * w / 100,
            (value["y"] + value["height"]) * h / 100]


def human(live, name):
    iid = live.images[name]["image_id"]
    return [h for h in review_store(live.ws).current_human_labels() if h["image_id"] == iid]


def sensor_context(live, cursor=None):
    from resources.review_tool import LabelStudioServerResource
    from resources.storage import WorkspaceResource

    return dg.build_sensor_context(cursor=cursor, resources={
        "storage": WorkspaceResource(root=str(live.ws.root)),
        "review_tool": LabelStudioServerResource(url=live.ls.url, api_key=live.ls.admin_token,
                                                 document_root=str(live.ls.document_root))})
