"""The live Label Studio review tool without a server: URL and timestamp helpers, labeling-config
comparison, the paths the server sees, the wiring of the review_tool resource and the sensor,
and the CLI's refusal without server settings (the server round trip: test_labelstudio_live.py)."""

from __future__ import annotations

from pathlib import PurePosixPath

import dagster as dg
import pytest

from labelloop.review.live.server import LabelStudioServer, config_labels, format_ts, same_label_config, server_host
from labelloop.review.live.sync import server_paths, server_tasks, storage_dirs
from labelloop.workspace.layout import Workspace
from support.helpers import cli


def test_cli_needs_the_server_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    cli(tmp_path / "ws", "init")
    out = cli(tmp_path / "ws", "push-review", ok=False)
    assert out.exit_code == 1
    assert "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY not set" in out.output


# --------------------------------------------------------------------------- pure helpers


def test_server_host_and_source_identity():
    assert server_host("http://LS.example.org:8080/") == "ls.example.org:8080"
    assert server_host("https://user:pw@ls.example.org/prefix") == "ls.example.org"
    for bad in ("ls.example.org", "ftp://x", "http://"):
        with pytest.raises(ValueError, match="not an http"):
            server_host(bad)
    with pytest.raises(ValueError, match="LABEL_STUDIO_API_KEY"):
        LabelStudioServer("http://127.0.0.1:1", " ")
    assert LabelStudioServer("http://127.0.0.1:8080", "t").source(3) == "label-studio/127.0.0.1:8080/project-3"


def test_timestamps_use_the_data_manager_format():
    assert format_ts("2026-11-29T10:18:16.8149Z") == "2026-11-29T10:18:16.814900Z"
    assert format_ts("2026-11-29T11:18:16+01:00") == "2026-11-29T10:18:16.000000Z"
    assert format_ts(None) is None


def test_label_configs_compare_as_xml():
    a = '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image"><Label value="cat"/></RectangleLabels></View>'
    b = "<View>\n  <Image name=\"image\" value=\"$image\"/>\n  <RectangleLabels toName=\"image\" name=\"label\">\n    <Label value=\"cat\"/>\n  </RectangleLabels>\n</View>"
    assert same_label_config(a, b) and not same_label_config(a, b.replace("cat", "dog"))
    assert config_labels(b) == {("label", "cat")}
    assert config_labels("<View") == set()


def test_paths_as_the_server_sees_them(tmp_path):
    ws = Workspace.at(tmp_path / "data" / "ws")
    assert server_paths(ws, None, None) == (PurePosixPath(ws.root.as_posix()), "")
    wpath, prefix = server_paths(ws, "/srv/files/projects/ws", "/srv/files")
    assert (str(wpath), prefix) == ("/srv/files/projects/ws", "projects/ws")
    with pytest.raises(ValueError, match="not under Label Studio's document root"):
        server_paths(ws, "/srv/ws", "/srv/files")
    with pytest.raises(ValueError, match="must be absolute"):
        server_paths(ws, "srv/ws", None)
    tasks = [{"data": {"image": "/data/local-files/?d=inbox/b1/a%20b.png"}},
             {"data": {"image": "/data/local-files/?d=inbox/b1/sub/c.png"}},
             {"data": {"image": "/data/local-files/?d=gold/g.png"}},
             {"data": {"image": "https://example.org/x.png"}}]
    assert server_tasks(tasks, "projects/ws")[0]["data"]["image"] == "/data/local-files/?d=projects/ws/inbox/b1/a%20b.png"
    assert server_tasks(tasks, "")[1] == tasks[1] and server_tasks(tasks, "x")[3] == tasks[3]
    assert storage_dirs(tasks, wpath) == ["/srv/files/projects/ws/gold", "/srv/files/projects/ws/inbox/b1"]
    with pytest.raises(ValueError, match="inside a folder"):
        storage_dirs([{"data": {"image": "/data/local-files/?d=../etc/passwd"}}], wpath)


def test_definitions_pick_the_review_tool_from_the_environment(monkeypatch):
    from pipelines.definitions import review_tool_resource
    from resources.review_tool import LabelStudioFilesResource, LabelStudioServerResource

    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    files = review_tool_resource()
    assert type(files) is LabelStudioFilesResource and not files.is_live
    assert files.push_batch(None, "b1") is None and files.pull_reviews(None) is None
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:8080")
    monkeypatch.setenv("LABEL_STUDIO_PROJECT_TITLE", "cats")
    live = review_tool_resource()
    assert isinstance(live, LabelStudioServerResource) and live.is_live and live.project_title == "cats"


def test_the_sensor_skips_with_the_file_route(tmp_path):
    from pipelines.sensors import label_studio_sensor
    from resources.review_tool import LabelStudioFilesResource
    from resources.storage import WorkspaceResource

    with dg.build_sensor_context(resources={"storage": WorkspaceResource(root=str(tmp_path)),
                                            "review_tool": LabelStudioFilesResource()}) as ctx:
        skip = label_studio_sensor(ctx)
    assert isinstance(skip, dg.SkipReason) and "LABEL_STUDIO_URL" in skip.skip_message
