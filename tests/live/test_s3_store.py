"""Images and tables on S3 (labelloop.store, resources.storage) against moto's S3 server on
loopback: the whole graph gives the same tables, labels and release as with the local store,
bad objects are rejected with reasons, and the S3-prefix inbox sensor never requests a batch
twice, even after a restart."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_aws.s3 import S3Resource

from labelloop import tables
from labelloop.images import samples
from labelloop.images.files import ImageError, load_rgb
from labelloop.ingest.files import ingest
from labelloop.ingest.scan import scan_batch
from labelloop.prelabel.stage import prelabel_batch
from labelloop.store import ENV_STORE_ENDPOINT, ENV_STORE_URL, StoreError, StoreSettings
from labelloop.tables.schemas import IMAGES, PREDICTIONS, REVIEW_QUEUE
from labelloop.workspace import repo
from labelloop.workspace.layout import Workspace, WorkspaceError
from labelloop.workspace.remotes import ENV_DVC_ENDPOINT, ENV_DVC_REMOTE
from labelloop.workspace.repo import read_labels
from pipelines.s3_sensors import s3_inbox_sensor
from resources.storage import WorkspaceResource, storage_resource_from_env
from support.helpers import cli
from support.moto_server import CREDENTIALS

pytestmark = pytest.mark.s3

BUCKET = "labelloop-store"
PREFIX = "team/project"


def _loop(root: Path, photos: Path) -> Workspace:
    """init -> ingest the bundled photos -> run (raw_images, prelabels, review_queue,
    review_export) -> import the demo review -> release (human_labels, labels, qa_report,
    dataset_release), with a lenient audit target so the release goes through."""
    cli(root, "init")
    # the template names the project (the folder's name): the local and S3 workspaces get the
    # same guidelines, so their queues' guidelines_sha256 are compared too
    (root / "guidelines.md").write_text("# Labeling guidelines\n\nBox every person, face and cat.\n", encoding="utf-8")
    cfg = yaml.safe_load((root / "labelloop.yaml").read_text())
    cfg["qa"]["audit_error_target"] = 0.5
    (root / "labelloop.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cli(root, "ingest", str(photos), "--batch", "photos")
    cli(root, "run")
    cli(root, "import-review", str(samples.demo_review_path()))
    out = cli(root, "release")
    assert "released dataset-v1" in out.output, out.output
    return Workspace.at(root)


@pytest.fixture(scope="module")
def s3_env(moto_server):
    """Environment of the S3 store (bucket created): LABELLOOP_STORE_URL, the endpoint, credentials."""
    moto_server["client"].create_bucket(Bucket=BUCKET)
    return {ENV_STORE_URL: f"s3://{BUCKET}/{PREFIX}", ENV_STORE_ENDPOINT: moto_server["url"], **CREDENTIALS,
            ENV_DVC_REMOTE: f"s3://{BUCKET}/dvc", ENV_DVC_ENDPOINT: moto_server["url"]}


@pytest.fixture(scope="module")
def runs(s3_env, tmp_path_factory):
    """The same loop with the local store and with the S3 store."""
    base = tmp_path_factory.mktemp("s3store")
    photos = samples.stage_photos(base)
    local = _loop(base / "local", photos)
    with pytest.MonkeyPatch.context() as mp:
        for k, v in s3_env.items():
            mp.setenv(k, v)
        remote = _loop(base / "remote", photos)  # the Workspace keeps its store settings
    return {"local": local, "remote": remote, "env": s3_env}


def _keys(client, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _strip(rows: list[dict], *drop: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


def test_the_tables_live_on_s3_and_nothing_under_local_tables(runs, moto_server):
    ws = runs["remote"]
    assert str(ws.tables) == f"s3://{BUCKET}/{PREFIX}/tables"
    keys = _keys(moto_server["client"], PREFIX + "/")
    for want in ("tables/raw_images/photos.parquet", "tables/review_queue/photos.parquet",
                 "tables/review_export/photos.parquet", "tables/labels/labels.parquet",
                 "tables/labels/resolved_images.parquet", "tables/qa/qa_report.json", "tables/qa/qa_report.html",
                 "tables/release/splits.parquet", "tables/release/coco_ids.parquet"):
        assert f"{PREFIX}/{want}" in keys, want
    assert any(k.startswith(f"{PREFIX}/tables/prelabels/photos/") and k.endswith("part-00000.parquet") for k in keys)
    assert any(k.startswith(f"{PREFIX}/tables/human_labels/imports/") and k.endswith("/_SUCCESS") for k in keys)
    inbox = [k for k in keys if k.startswith(f"{PREFIX}/inbox/photos/")]
    assert len(inbox) == 12
    assert not (ws.root / "tables").exists() and not (ws.root / "inbox").exists()
    rows = tables.read_rows(repo.images_path(ws, "photos"), IMAGES)
    assert sorted(r["uri"] for r in rows) == sorted(f"s3://{BUCKET}/{k}" for k in inbox)
    # review tasks reference the objects (Label Studio reads s3:// through its S3 source storage)
    tasks = json.loads((ws.review_out / "photos" / "tasks.json").read_text())
    assert tasks and all(t["data"]["image"].startswith(f"s3://{BUCKET}/{PREFIX}/inbox/photos/") for t in tasks)
    # what stays local: the git + DVC repository and the release it versions; dvc.lock records
    # the S3 label tables as the release's dependency (DVC external dependency via remote "store")
    assert (ws.root / "release" / "manifest.json").is_file() and (ws.root / ".dvc").is_dir()
    lock = yaml.safe_load((ws.root / "dvc.lock").read_text())["stages"]["release"]
    dep = next(d for d in lock["deps"] if d["path"] == "remote://store/tables/labels")
    assert dep["md5"].endswith(".dir") and dep["nfiles"] == 2
    assert f"url = s3://{BUCKET}/{PREFIX}" in (ws.root / ".dvc" / "config").read_text()
    # the release's image bytes were copied from the store into release/ and pushed to the DVC remote on S3
    pushed = _keys(moto_server["client"], "dvc/")
    assert any(k.startswith("dvc/files/md5/") for k in pushed) and len(pushed) >= len(inbox)
    local_lock = yaml.safe_load((runs["local"].root / "dvc.lock").read_text())["stages"]["release"]
    assert [d["path"] for d in local_lock["deps"]] == ["labelloop.yaml", "tables/labels"]


def test_s3_run_equals_the_local_run(runs):
    loc, rem = runs["local"], runs["remote"]
    img_l, img_r = (tables.read_rows(repo.images_path(w, "photos"), IMAGES) for w in (loc, rem))
    assert len(img_l) == 12 and all(r["status"] == "ok" for r in img_l)
    assert _strip(img_l, "uri", "origin_path") == _strip(img_r, "uri", "origin_path")
    assert [r["uri"].rsplit("/", 1)[1] for r in img_l] == [r["uri"].rsplit("/", 1)[1] for r in img_r]
    pred_l, pred_r = (tables.read_rows(w.table("prelabels"), PREDICTIONS) for w in (loc, rem))
    assert pred_l and _strip(pred_l, "run_id") == _strip(pred_r, "run_id")
    q_l, q_r = (tables.read_rows(w.table("review_queue"), REVIEW_QUEUE) for w in (loc, rem))
    assert _strip(q_l, "exported_at", "exported_to") == _strip(q_r, "exported_at", "exported_to")
    (lab_l, res_l), (lab_r, res_r) = read_labels(loc), read_labels(rem)
    assert lab_l and lab_l == lab_r and res_l == res_r
    # the release: COCO, YOLO, image files and labels byte for byte the same; the image and
    # lineage tables differ only by the images' URIs (workspace-relative vs s3://)
    rel_l, rel_r = _files(loc.release_dir), _files(rem.release_dir)
    assert any(k.startswith("annotations/") for k in rel_l) and any(k.startswith("images/") for k in rel_l)
    assert rel_l.keys() == rel_r.keys()
    with_uris = {"images.parquet": "uri", "lineage.parquet": "source_uri"}
    assert {k for k in rel_l if rel_l[k] != rel_r[k]} == {*with_uris, "manifest.json"}
    for name, col in with_uris.items():
        a, b = (tables.read_parquet(w.release_dir / name).to_pylist() for w in (loc, rem))
        run_ids = {k for k in (a[0] if a else {}) if k.endswith("run_id")}  # each run has its own Dagster ids
        assert _strip(a, col, *run_ids) == _strip(b, col, *run_ids)
        assert [f"s3://{BUCKET}/{PREFIX}/{r[col]}" for r in a] == [r[col] for r in b]
    man_l, man_r = (json.loads((w.release_dir / "manifest.json").read_text()) for w in (loc, rem))
    assert {k: v for k, v in man_l["files"].items() if k not in with_uris} == \
        {k: v for k, v in man_r["files"].items() if k not in with_uris}
    assert man_l["counts"] == man_r["counts"]


def test_bad_objects_on_s3_are_rejected_with_reasons(runs, moto_server, tmp_path, monkeypatch):
    for k, v in runs["env"].items():
        monkeypatch.setenv(k, v)
    ws = Workspace.at(runs["remote"].root)
    photos = sorted(Path(samples.stage_photos(tmp_path)).glob("*.jpg"))
    src = tmp_path / "bad"
    src.mkdir()
    (src / "good.jpg").write_bytes(photos[0].read_bytes())
    (src / "cut.jpg").write_bytes(photos[0].read_bytes()[:3000])  # truncated JPEG
    (src / "text.png").write_bytes(b"not an image at all")
    res = ingest(ws, src, "bad")
    assert sorted(res.copied) == ["cut.jpg", "good.jpg", "text.png"]
    summary = scan_batch(ws, "bad")
    rows = {r["source_path"]: r for r in tables.read_rows(repo.images_path(ws, "bad"), IMAGES)}
    assert summary["images"] == 3 and summary["rejected"] == 2
    assert rows["good.jpg"]["status"] == "ok" and rows["good.jpg"]["duplicate_of"] is not None
    assert rows["cut.jpg"]["reject_reason"].startswith("truncated: ")
    assert rows["text.png"]["reject_reason"] == "not an image: no image format recognizes its bytes"
    # a missing object: a clear error naming its URI
    missing = f"s3://{BUCKET}/{PREFIX}/inbox/bad/gone.jpg"
    with pytest.raises(ImageError, match=f"^{missing}: unreadable: "):
        load_rgb(ws.locate(missing))
    with pytest.raises(WorkspaceError, match=f"s3://{BUCKET}/nowhere: no such file or folder"):
        ingest(ws, f"s3://{BUCKET}/nowhere", "nope")


def test_ingest_registers_an_existing_s3_prefix(runs, moto_server, tmp_path, monkeypatch):
    for k, v in runs["env"].items():
        monkeypatch.setenv(k, v)
    client = moto_server["client"]
    photo = sorted(Path(samples.stage_photos(tmp_path)).glob("*.jpg"))[1].read_bytes()
    client.put_object(Bucket=BUCKET, Key="drop/2026-11/cam1/a.jpg", Body=photo)
    client.put_object(Bucket=BUCKET, Key="drop/2026-11/.hidden.jpg", Body=photo)
    ws = Workspace.at(runs["remote"].root)
    res = ingest(ws, f"s3://{BUCKET}/drop/2026-11", "dropped")
    assert res.copied == ["cam1/a.jpg"]
    assert client.get_object(Bucket=BUCKET, Key=f"{PREFIX}/inbox/dropped/cam1/a.jpg")["Body"].read() == photo
    again = ingest(ws, f"s3://{BUCKET}/drop/2026-11", "dropped")
    assert again.copied == [] and again.already_ingested == ["cam1/a.jpg"]


class _CrashAfter:
    """The real pre-labeler, raising on its ``n``-th image (a crash in the middle of a batch)."""

    def __init__(self, model, n: int):
        self.model, self.n, self.seen = model, n, 0
        self.model_id, self.checkpoint_sha256, self.device = model.model_id, model.checkpoint_sha256, model.device

    def predict(self, images):
        self.seen += len(images)
        if self.seen >= self.n:
            raise RuntimeError("crash")
        return self.model.predict(images)


def test_prelabels_on_s3_resume_after_a_crash(runs, moto_server, tmp_path, monkeypatch):
    from resources.prelabeler import PreLabelerResource

    env = dict(runs["env"], **{ENV_STORE_URL: f"s3://{BUCKET}/resume"})
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "ws"
    cli(root, "init")
    photos = sorted(Path(samples.stage_photos(tmp_path)).glob("*.jpg"))[:5]
    src = tmp_path / "five"
    src.mkdir()
    for p in photos:
        (src / p.name).write_bytes(p.read_bytes())
    ws = Workspace.at(root)
    ingest(ws, src, "b")
    scan_batch(ws, "b")
    model = PreLabelerResource().get(ws.config(), ws.root)
    with pytest.raises(RuntimeError, match="crash"):
        prelabel_batch(ws, "b", _CrashAfter(model, 4), run_id="r1", chunk_size=2)
    folder = repo.prelabel_dir(ws, "b", model.model_id)
    assert [p.name for p in folder.glob("part-*.parquet")] == ["part-00000.parquet"]  # the finished chunk, on S3
    again = prelabel_batch(ws, "b", model, run_id="r2", chunk_size=2)
    assert again["images_cached"] == 2 and again["images_predicted"] == 3
    got = sorted(_strip(repo.batch_predictions(ws, "b", model.model_id), "run_id"), key=lambda r: r["prediction_id"])
    ids = {r["image_id"] for r in tables.read_rows(repo.images_path(ws, "b"), IMAGES)}
    want = [r for r in tables.read_rows(runs["local"].table("prelabels"), PREDICTIONS) if r["image_id"] in ids]
    assert got and got == sorted(_strip(want, "run_id"), key=lambda r: r["prediction_id"])
    assert not (root / "tables").exists()


def _evaluate(url: str, endpoint: str, instance, cursor=None):
    """One evaluation of s3_inbox_sensor with a fresh context (the cursor as the daemon stored it)."""
    s3 = S3Resource(endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                    region_name="us-east-1")
    storage = WorkspaceResource(root="/nonexistent", store_url=url, s3=s3)
    with dg.build_sensor_context(resources={"storage": storage}, instance=instance, cursor=cursor) as ctx:
        result = s3_inbox_sensor(ctx)
        return result, ctx.cursor


def test_s3_inbox_sensor_requests_each_new_prefix_once(moto_server):
    client, url, endpoint = moto_server["client"], "s3://sensor-store/p", moto_server["url"]
    client.create_bucket(Bucket="sensor-store")
    client.put_object(Bucket="sensor-store", Key="p/inbox/b1/x.jpg", Body=b"x")
    client.put_object(Bucket="sensor-store", Key="p/inbox/.tmp/x.jpg", Body=b"x")  # not a batch name
    client.put_object(Bucket="sensor-store", Key="p/tables/raw_images/b0.parquet", Body=b"x")
    with dg.instance_for_test() as instance:
        first, _ = _evaluate(url, endpoint, instance)
        assert [r.partition_key for r in first.run_requests] == ["b1"]
        assert [r.run_key for r in first.run_requests] == ["batch-b1"]
        assert first.dynamic_partitions_requests[0].partition_keys == ["b1"]
        cursor = first.cursor
        assert json.loads(cursor) == ["b1"]
        again, kept = _evaluate(url, endpoint, instance, cursor)
        assert isinstance(again, dg.SkipReason) and json.loads(kept) == ["b1"]
    with dg.instance_for_test() as fresh:  # a restart: new process, new instance, the stored cursor
        after, _ = _evaluate(url, endpoint, fresh, cursor)
        assert isinstance(after, dg.SkipReason)
        client.put_object(Bucket="sensor-store", Key="p/inbox/b2/y.jpg", Body=b"y")
        later, _ = _evaluate(url, endpoint, fresh, cursor)
        assert [r.partition_key for r in later.run_requests] == ["b2"] and json.loads(later.cursor) == ["b1", "b2"]


def test_local_store_sensor_stands_aside(tmp_path):
    with dg.instance_for_test() as instance:
        with dg.build_sensor_context(resources={"storage": WorkspaceResource(root=str(tmp_path))},
                                     instance=instance) as ctx:
            assert "inbox_sensor watches it" in s3_inbox_sensor(ctx).skip_message


def test_a_store_url_without_a_scheme_is_a_clear_error(tmp_path):
    ws = Workspace(tmp_path, StoreSettings(url="bucket/prefix"))
    with pytest.raises(StoreError, match=r"store URL 'bucket/prefix': expected s3://bucket\[/prefix\] \(LABELLOOP_STORE_URL\)"):
        ws.table("labels")


def test_the_storage_resource_binds_settings_through_env_vars(tmp_path, monkeypatch):
    for k in (ENV_STORE_URL, ENV_STORE_ENDPOINT, *CREDENTIALS, "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    local = storage_resource_from_env(str(tmp_path))
    assert local.store_url is None and local.s3 is None and not local.store().is_remote
    monkeypatch.setenv(ENV_STORE_URL, "s3://b/p")
    monkeypatch.setenv(ENV_STORE_ENDPOINT, "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    res = storage_resource_from_env(str(tmp_path))
    # the definitions hold EnvVar references, never the values
    assert isinstance(res.store_url, dg.EnvVar) and res.store_url.env_var_name == ENV_STORE_URL
    assert isinstance(res.s3.aws_secret_access_key, dg.EnvVar) and res.s3.aws_access_key_id is None
    with dg.build_resources({"storage": res}) as built:
        store = built.storage.store()
    assert (store.url, store.endpoint_url, store.secret) == ("s3://b/p", "http://127.0.0.1:9", "s3cr3t")


def test_a_workspace_refuses_a_second_store(runs, tmp_path, monkeypatch):
    remote = runs["remote"]
    assert (remote.state / "store_url").read_text() == f"s3://{BUCKET}/{PREFIX}\n"
    for k in (ENV_STORE_URL, ENV_STORE_ENDPOINT):
        monkeypatch.delenv(k, raising=False)
    res = cli(remote.root, "status", ok=False)  # the S3 workspace without LABELLOOP_STORE_URL
    assert res.exit_code == 1
    assert f"keeps its images and tables in s3://{BUCKET}/{PREFIX}, but the store is now the workspace folder" \
        in res.output
    monkeypatch.setenv(ENV_STORE_URL, f"s3://{BUCKET}/elsewhere")
    with pytest.raises(WorkspaceError, match=f"but the store is now s3://{BUCKET}/elsewhere"):
        Workspace.at(remote.root).require()
    local = runs["local"]  # a local workspace with tables: an S3 store is refused, nothing recorded
    with pytest.raises(WorkspaceError, match=f"keeps its tables in {local.root / 'tables'}, but the store is now"):
        Workspace.at(local.root).require()
    assert not (local.state / "store_url").exists()


@pytest.mark.parametrize("url, match", [
    ("s3://", "no bucket"),  # was: a local PosixUPath 's3:' (images written into ./s3:/inbox)
    ("s3:///prefix", "no bucket"),
    ("s3:// bucket/p", "whitespace"),
    ("s3://bucket/my prefix", "whitespace"),
    ("s3://Bad_Bucket/p", "not a valid S3 bucket name"),
    ("s3://b/p", "not a valid S3 bucket name"),
    ("s3://bucket//p", "empty path part"),
    ("http://127.0.0.1:9000/bucket", "expected s3://bucket"),
])
def test_a_malformed_store_url_is_refused_and_never_recorded(tmp_path, url, match):
    ws = Workspace(tmp_path, StoreSettings(url=url))
    with pytest.raises(StoreError, match=match):
        ws.check_store()
    with pytest.raises(StoreError, match=match):
        ws.table("labels")
    assert not (tmp_path / ".labelloop" / "store_url").exists()
    ok = Workspace(tmp_path, StoreSettings(url=f"s3://{BUCKET}/{PREFIX}/")).check_store()  # then the fixed URL works
    assert (ok.state / "store_url").read_text() == f"s3://{BUCKET}/{PREFIX}\n"
