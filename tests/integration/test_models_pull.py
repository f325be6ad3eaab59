"""``labelloop models pull`` against a hub-shaped HTTP server on 127.0.0.1 (the real Hub is not
reachable from the tests): the server implements exactly what huggingface_hub 2.4 calls for
``HfApi.model_info(files_metadata=True)`` and ``snapshot_download``:

- ``GET /api/models/{org}/{name}/revision/{rev}?blobs=True``: ``{id, sha, siblings: [{rfilename,
  size, blobId, lfs: {sha256, size, pointerSize}}]}``;
- ``GET /api/models/{org}/{name}/tree/{commit}?recursive=True``: ``[{type, path, size, oid, lfs:
  {oid, size, pointerSize}}]`` (no ``xetHash``, so no Xet: plain HTTP downloads);
- ``HEAD`` / ``GET /{org}/{name}/resolve/{commit}/{file}`` with ``X-Repo-Commit``, ``ETag`` (git
  blob id) and, for LFS files, ``X-Linked-Etag`` (sha256) and ``X-Linked-Size``.

It serves a tiny model folder (config.json, preprocessor_config.json, model.safetensors and a
pytorch_model.bin duplicate that the pull leaves out).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pytest
import yaml

from labelloop.models import registry
from labelloop.models.hashing import sha256_path
from labelloop.prelabel.backends.loading import resolve_path, verify_checkpoint
from labelloop.workspace.config import load_config
from labelloop.workspace.layout import Workspace
from labelloop.workspace.model_specs import DetectorSpec
from support.helpers import cli, free_port

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "IDEA-Research/grounding-dino-tiny"
LFS = {"model.safetensors", "pytorch_model.bin"}


def _safetensors(n: int) -> bytes:
    """A valid safetensors file holding one float32 tensor of n values (safetensors format spec)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + bytes(range(256)) * (4 * n // 256) + bytes(4 * n % 256)


FILES = {
    ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    "config.json": json.dumps({"model_type": "grounding-dino", "d_model": 8}).encode(),
    "preprocessor_config.json": json.dumps({"size": {"shortest_edge": 800, "longest_edge": 1333}}).encode(),
    "model.safetensors": _safetensors(1024),
    "pytorch_model.bin": b"\x80\x02not-fetched" * 10,
}


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Hub:
    """The server's state: which repo answers 401, which file is served tampered, what was requested."""

    def __init__(self):
        self.denied: set[str] = set()
        self.tampered: set[str] = set()
        self.requests: list[str] = []

    def body(self, name: str) -> bytes:
        data = FILES[name]
        return data[:-1] + bytes([data[-1] ^ 1]) if name in self.tampered else data  # same size, other bytes

    def sibling(self, name: str) -> dict:
        data = FILES[name]
        s: dict = {"rfilename": name, "size": len(data), "blobId": git_oid(data)}
        if name in LFS:
            s["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
            s["blobId"] = git_oid(b"pointer " + name.encode())
        return s


def handler(hub: Hub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _json(self, obj, status=200, headers=None):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _route(self):
            path = unquote(urlparse(self.path).path)
            hub.requests.append(f"{self.command} {path}")
            m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)", path)
            r = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            repo = (m or r).group(1) if (m or r) else None
            if repo in hub.denied:
                return self._json({"error": "Access to model is restricted. You must be authenticated."}, 401,
                                  {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"})
            if repo != REPO:
                return self._json({"error": "Repository not found"}, 404, {"X-Error-Code": "RepoNotFound"})
            if m and m.group(2) == "revision":
                return self._json({"id": REPO, "sha": COMMIT, "private": False, "gated": False,
                                   "siblings": [hub.sibling(n) for n in FILES]})
            if m:
                tree = []
                for n in FILES:
                    s = hub.sibling(n)
                    entry = {"type": "file", "path": n, "size": s["size"], "oid": s["blobId"]}
                    if "lfs" in s:
                        entry["lfs"] = {"oid": s["lfs"]["sha256"], "size": s["size"], "pointerSize": 134}
                    tree.append(entry)
                return self._json(tree)
            if r and r.group(3) in FILES:
                name, data = r.group(3), hub.body(r.group(3))
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{git_oid(FILES[name])}"')
                if name in LFS:
                    self.send_header("X-Linked-Etag", f'"{hashlib.sha256(FILES[name]).hexdigest()}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(data)
                return None
            return self._json({"error": "Entry not found"}, 404, {"X-Error-Code": "EntryNotFound"})

        do_GET = do_HEAD = _route

    return Handler


@pytest.fixture
def hub(monkeypatch, tmp_path):
    state = Hub()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv(registry.ENV_MODELS, raising=False)
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def ws_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models") / "ws"
    cli(root, "init")
    return root


def _leftovers(ws_root):
    models = ws_root / "models"
    return sorted(p.name for p in models.iterdir() if p.name.startswith((".pull-", ".old-"))) if models.exists() else []


def test_pull_installs_verifies_records_and_prints_the_snippet(hub, ws_root):
    out = cli(ws_root, "models", "pull", "grounding-dino-tiny").output
    folder = ws_root / "models" / "grounding-dino-tiny"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == \
        ["config.json", "model.safetensors", "preprocessor_config.json"]  # no .bin duplicate, no .gitattributes
    assert (folder / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert not (folder / ".cache").exists() and _leftovers(ws_root) == []
    sha = sha256_path(folder)
    [row] = registry.read_models(Workspace.at(ws_root))
    assert row["sha256"] == sha and row["path"] == "models/grounding-dino-tiny" and row["revision"] == COMMIT
    assert row["source"] == REPO and row["role"] == "detector" and row["status"] == "available"
    assert json.loads(row["upstream_sha256_json"]) == {"model.safetensors": hashlib.sha256(FILES["model.safetensors"]).hexdigest()}
    assert row["size_bytes"] == sum(len(FILES[n]) for n in ("config.json", "model.safetensors", "preprocessor_config.json"))
    snippet = out[out.index("prelabeler:"):]
    spec = DetectorSpec(**yaml.safe_load(snippet)["prelabeler"]["detector"])
    assert (spec.kind, spec.path, spec.sha256) == ("grounding-dino", "models/grounding-dino-tiny", sha)
    assert verify_checkpoint(resolve_path(spec.path, ws_root), spec.sha256, "detector grounding-dino", kind="dir") == folder
    assert not any("pytorch_model.bin" in r for r in hub.requests)

    # a second pull of the complete folder asks the hub nothing
    hub.requests.clear()
    again = json.loads(cli(ws_root, "models", "pull", "grounding-dino-tiny", "--json").output)
    assert again["already"] is True and again["sha256"] == sha and hub.requests == []

    listing = json.loads(cli(ws_root, "models", "list", "--json").output)
    assert {e["name"] for e in listing["catalog"]} >= {"grounding-dino-tiny", "owlv2-base", "sam-vit-base", "sam-vit-huge",
                                                       "sam2.1-hiera-tiny", "sam3", "florence-2-base"}
    assert [(r["name"], r["sha256"]) for r in listing["installed"]] == [("grounding-dino-tiny", sha)]
    text = cli(ws_root, "models", "list").output
    assert f"sha256 {sha}" in text and "hf auth login" in text

    # --use: the installed model goes into labelloop.yaml and becomes current (nothing asked of the hub)
    hub.requests.clear()
    used = cli(ws_root, "models", "pull", "grounding-dino-tiny", "--use").output
    assert "grounding-dino-tiny is now the current detector" in used and hub.requests == []
    cfg = load_config(ws_root / "labelloop.yaml")
    assert (cfg.prelabeler.backend, cfg.prelabeler.detector.path, cfg.prelabeler.detector.sha256) == \
        ("foundation", "models/grounding-dino-tiny", sha)
    assert registry.get_model(Workspace.at(ws_root), "grounding-dino-tiny")["status"] == "current"


def test_a_tampered_file_is_refused_and_nothing_is_installed(hub, ws_root, tmp_path):
    hub.tampered.add("model.safetensors")
    ws2 = tmp_path / "ws2"
    cli(ws2, "init")
    res = cli(ws2, "models", "pull", "grounding-dino-tiny", ok=False)
    assert res.exit_code == 1
    err = res.output.strip().splitlines()[-1]
    good = hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    bad = hashlib.sha256(hub.body("model.safetensors")).hexdigest()
    assert "model.safetensors" in err and good in err and bad in err
    assert not (ws2 / "models" / "grounding-dino-tiny").exists() and _leftovers(ws2) == []
    assert registry.read_models(Workspace.at(ws2)) == []


def test_gated_repo_gives_the_login_hint_and_a_dead_hub_one_line(hub, ws_root, monkeypatch):
    hub.denied.add(REPO)
    res = cli(ws_root, "models", "pull", "owlv2-base", ok=False)  # not served: 404
    assert res.exit_code == 1 and "no such model repository" in res.output
    res = cli(ws_root, "models", "pull", "grounding-dino-tiny", "--revision", "v2", ok=False)
    line = res.output.strip()
    assert res.exit_code == 1 and len(line.splitlines()) == 1
    assert REPO in line and "hf auth login" in line and "HF_TOKEN" in line and "401" in line

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", dead)
    res = cli(ws_root, "models", "pull", "sam2.1-hiera-tiny", ok=False)
    line = res.output.strip()
    assert res.exit_code == 1 and len(line.splitlines()) == 1 and dead in line and "cannot reach" in line
    assert not (ws_root / "models" / "sam2.1-hiera-tiny").exists()

    res = cli(ws_root, "models", "pull", "no-such-model", ok=False)
    assert res.exit_code == 1 and "no model 'no-such-model' in the catalog" in res.output
