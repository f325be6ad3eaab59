"""Image-level tags with a real Label Studio 1.23 server (session fixture in conftest.py).

A workspace of its own (project "labelloop tags") adds a ``level: tag`` category ``outdoor`` to
the default categories; push-review creates the project with our labeling config, whose
multi-label ``Choices name="tags"`` the server must accept. The reviewer ticks the tag through the
server's API as the editor saves a Choices answer; pull-review brings it back as the image's tag,
and a Choices answer naming a box category is rejected alone.
"""

from __future__ import annotations

import pytest
import yaml

from labelloop.review.live.server import LabelStudioServer
from labelloop.review.live.sync import pull_reviews, push_batch
from labelloop.review.store import review_store
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace
from support.helpers import cli
from support.ls_live import photos

TITLE = "labelloop tags"
BATCH = "b1"


def tag_result(rid: str, *choices: str) -> dict:
    """What Label Studio's editor saves for an image-level Choices answer."""
    return {"id": rid, "from_name": "tags", "to_name": "image", "type": "choices", "origin": "manual",
            "value": {"choices": list(choices)}}


@pytest.mark.labelstudio
def test_tags_choices_round_trip_through_the_server(label_studio, tmp_path_factory):
    src = photos(tmp_path_factory.mktemp("ls-tag-photos") / "photos")
    root = label_studio.document_root / "ws-tags"
    cli(root, "init")
    cfg = yaml.safe_load((root / "labelloop.yaml").read_text())
    cfg["categories"].append({"name": "outdoor", "level": "tag"})
    (root / "labelloop.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cli(root, "ingest", str(src), "--batch", BATCH)
    cli(root, "run")
    ws = Workspace.at(root)
    server = LabelStudioServer(label_studio.url, label_studio.admin_token)
    summary = push_batch(ws, server, BATCH, title=TITLE, document_root=str(label_studio.document_root))
    client = label_studio.client()
    project = client.projects.get(summary["project_id"])
    assert '<Choices name="tags" toName="image" choice="multiple"' in project.label_config
    tasks = {t.data["source_path"]: t for t in client.tasks.list(project=summary["project_id"], fields="all")}
    rev = label_studio.client(label_studio.reviewer_token)
    rocket, astro = tasks["rocket.jpg"], tasks["astronaut.png"]
    rev.annotations.create(rocket.id, result=[tag_result("tg1", "outdoor")], lead_time=3.0)
    rev.annotations.create(astro.id, result=[tag_result("tg2", "face")], lead_time=3.0)  # not a tag category
    s = pull_reviews(ws, server, title=TITLE)
    images = {r["source_path"]: r["image_id"] for r in repo.all_images(ws) if r["status"] == "ok"}
    store = review_store(ws)
    assert store.current_tags().get(images["rocket.jpg"]) == ["outdoor"]
    (rej,) = [r for r in store.rejects() if "tg2" in r["reason"]]
    assert "tag 'face' is a box category, not an image-level one" in rej["reason"], (rej, s)
