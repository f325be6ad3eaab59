"""Git + DVC of a workspace (labelloop.workspace.init.init_workspace, labelloop.workspace.versioning), for real:
git and ``python -m dvc`` in tmp_path workspaces, with no global git identity."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from labelloop.workspace import versioning as V
from labelloop.workspace.config import ConfigError
from labelloop.workspace.init import GITIGNORE, init_workspace, package_text
from labelloop.workspace.layout import Workspace

SHA_A = "a" * 64
SHA_B = "b" * 64


def isolate_git(mp: pytest.MonkeyPatch, home: Path, gitconfig: Path | None = None) -> None:
    """No global or system git config (hence no identity) unless ``gitconfig`` is given."""
    home.mkdir(parents=True, exist_ok=True)
    mp.setenv("HOME", str(home))
    mp.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    mp.setenv("GIT_CONFIG_GLOBAL", str(gitconfig or home / "no-gitconfig"))
    mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL",
                "GIT_DIR", "GIT_WORK_TREE", "LABELLOOP_DAGSTER_HOME"):
        mp.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def no_identity(tmp_path, monkeypatch):
    isolate_git(monkeypatch, tmp_path / "home")


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def git_rc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """One initialized workspace, copied by the tag tests (git-only operations)."""
    base = tmp_path_factory.mktemp("versioning-template")
    with pytest.MonkeyPatch.context() as mp:
        isolate_git(mp, base / "home")
        init_workspace(Workspace.at(base / "ws"))
    return base / "ws"


@pytest.fixture
def repo(template, tmp_path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(template, root, symlinks=True)
    return root


def test_init_workspace_creates_git_dvc_config_and_a_local_identity(template, tmp_path):
    """(The module's template workspace, read only: it was created with no git identity configured.)"""
    assert git_rc(tmp_path, "config", "user.email").stdout == ""  # really no identity anywhere
    ws = Workspace.at(template)
    root = ws.root
    assert ws.is_initialized()
    assert (root / ".git").is_dir() and (root / ".dvc").is_dir()
    assert (root / "dvc.yaml").read_text(encoding="utf-8") == package_text("dvc.yaml")
    # the shipped default, with the project named after the workspace folder
    expected = package_text("labelloop.yaml").replace("project: demo", f'project: "{root.name}"', 1)
    assert (root / "labelloop.yaml").read_text(encoding="utf-8") == expected
    for d in ("inbox", "review_inbox", "review_out", "tables", ".labelloop", ".dagster"):
        assert (root / d).is_dir(), d
    assert (root / ".dagster" / "dagster.yaml").read_text().startswith("telemetry:\n  enabled: false\n")
    # identity written to the repository's own config
    assert git(root, "config", "--local", "user.name") == "labelloop"
    assert git(root, "config", "--local", "user.email") == "labelloop@localhost"
    # one initial commit of exactly these files; nothing left uncommitted
    assert git(root, "log", "--format=%s|%an|%ae") == "labelloop init|labelloop|labelloop@localhost"
    assert git(root, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(root, "ls-files").splitlines() == [
        ".dvc/.gitignore", ".dvc/config", ".dvcignore", ".gitignore", "dvc.yaml", "guidelines.md", "labelloop.yaml"]
    assert git(root, "status", "--porcelain") == ""
    assert (root / ".gitignore").read_text().splitlines() == GITIGNORE
    # DVC (its INI config, as `dvc config` wrote it): analytics off, the local default remote
    dvc_cfg = configparser.ConfigParser()
    dvc_cfg.read(root / ".dvc" / "config")
    assert dict(dvc_cfg["core"]) == {"analytics": "false", "remote": "local"}
    assert dict(dvc_cfg["'remote \"local\"'"]) == {"url": str(ws.dvc_remote)}  # configobj quoting
    assert ws.dvc_remote.is_dir()


def test_init_keeps_a_configured_identity(tmp_path, monkeypatch):
    cfg = tmp_path / "gitconfig"
    cfg.write_text("[user]\n\tname = Ada\n\temail = ada@example.org\n")
    isolate_git(monkeypatch, tmp_path / "home2", gitconfig=cfg)
    ws = init_workspace(Workspace.at(tmp_path / "ws"))
    assert git_rc(ws.root, "config", "--local", "user.email").returncode == 1  # not set locally
    assert git(ws.root, "log", "--format=%an <%ae>") == "Ada <ada@example.org>"


def test_init_is_idempotent_and_never_overwrites(tmp_path):
    ws = init_workspace(Workspace.at(tmp_path / "ws"))
    head = git(ws.root, "rev-parse", "HEAD")
    init_workspace(ws)  # nothing changed: ok, no new commit, .gitignore not duplicated
    assert git(ws.root, "rev-parse", "HEAD") == head
    assert (ws.root / ".gitignore").read_text().splitlines() == GITIGNORE
    # edits to labelloop.yaml and dvc.yaml survive a re-init (and are committed by it)
    cfg = ws.config_path.read_text(encoding="utf-8").replace(f'project: "{ws.root.name}"', "project: edited")
    ws.config_path.write_text(cfg, encoding="utf-8")
    dvc_yaml = (ws.root / "dvc.yaml").read_text(encoding="utf-8") + "# local note\n"
    (ws.root / "dvc.yaml").write_text(dvc_yaml, encoding="utf-8")
    (ws.root / ".gitignore").write_text("/scratch/\n/inbox/\n")
    init_workspace(ws)
    assert ws.config_path.read_text(encoding="utf-8") == cfg
    assert ws.config().project == "edited"
    assert (ws.root / "dvc.yaml").read_text(encoding="utf-8") == dvc_yaml
    assert (ws.root / ".gitignore").read_text().splitlines() == ["/scratch/", "/inbox/"] + GITIGNORE[1:]
    assert git(ws.root, "log", "--format=%s").splitlines() == ["labelloop init", "labelloop init"]
    assert git(ws.root, "status", "--porcelain") == ""
    assert git(ws.root, "config", "--local", "user.email") == "labelloop@localhost"


def test_init_refuses_an_invalid_existing_config(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    (root / "labelloop.yaml").write_text("categories: []\n")
    with pytest.raises(ConfigError, match=str(root / "labelloop.yaml")):
        init_workspace(Workspace.at(root))
    assert not (root / ".git").exists() and not (root / ".dvc").exists()
    assert (root / "labelloop.yaml").read_text() == "categories: []\n"


def tag(root: Path, name: str, note: str, content: str | None = None) -> str:
    git(root, "commit", "-q", "--allow-empty", "-m", f"release {name}")
    body = f"{note}\n\ncontent-sha256: {content}\n" if content else note
    git(root, "tag", "-a", name, "-m", body)
    return git(root, "rev-parse", "HEAD")


def test_release_tags_and_next_release_number(repo):
    counter = repo / ".labelloop" / "release_counter"
    assert V.release_tags(repo) == []
    assert V.next_release_number(repo, counter) == 1
    sha1 = tag(repo, "dataset-v1", "first release", SHA_A)
    sha2 = tag(repo, "dataset-v2", "second release\nwith details", SHA_B)
    sha10 = tag(repo, "dataset-v10", "no content line")
    git(repo, "tag", "-a", "dataset-v3-rc", "-m", "not a release")
    git(repo, "tag", "-a", "v4", "-m", "not a release either")
    assert V.release_tags(repo) == [
        {"tag": "dataset-v1", "n": 1, "git_sha": sha1, "content_sha256": SHA_A, "subject": "first release"},
        {"tag": "dataset-v2", "n": 2, "git_sha": sha2, "content_sha256": SHA_B, "subject": "second release"},
        {"tag": "dataset-v10", "n": 10, "git_sha": sha10, "content_sha256": None, "subject": "no content line"},
    ]
    assert V.next_release_number(repo, counter) == 11


def test_counter_wins_over_a_deleted_tag(repo):
    counter = repo / ".labelloop" / "release_counter"
    tag(repo, "dataset-v1", "first", SHA_A)
    tag(repo, "dataset-v2", "second", SHA_B)
    assert V.next_release_number(repo, counter) == 3
    git(repo, "tag", "-d", "dataset-v2")
    assert [t["tag"] for t in V.release_tags(repo)] == ["dataset-v1"]
    assert V.next_release_number(repo, counter) == 2  # no counter: only the tags
    counter.write_text("2")
    assert V.next_release_number(repo, counter) == 3
    counter.write_text("7\n")
    assert V.next_release_number(repo, counter) == 8
    counter.write_text("")
    assert V.next_release_number(repo, counter) == 2


@pytest.mark.parametrize("make_v2", [["dataset-v2"], ["-a", "dataset-v2", "-m", ""]], ids=["lightweight", "empty-message"])
def test_hand_made_tags_still_count(repo, make_v2):
    tag(repo, "dataset-v1", "first", SHA_A)
    git(repo, "commit", "-q", "--allow-empty", "-m", "release dataset-v2")
    git(repo, "tag", *make_v2)
    assert git(repo, "tag", "-l", "dataset-v*").split() == ["dataset-v1", "dataset-v2"]
    assert V.next_release_number(repo, repo / "no-counter") == 3  # actually 2: dataset-v2 would be made again
    assert [t["tag"] for t in V.release_tags(repo)] == ["dataset-v1", "dataset-v2"]  # actually ["dataset-v1"]


def test_rollback_to_an_unknown_tag_names_the_known_tags(repo):
    with pytest.raises(V.VersioningError) as exc:
        V.rollback(repo, "dataset-v1")
    assert str(exc.value) == "unknown release tag 'dataset-v1' (releases: none)"
    tag(repo, "dataset-v1", "first", SHA_A)
    tag(repo, "dataset-v2", "second", SHA_B)
    head = git(repo, "rev-parse", "HEAD")
    for bad in ("dataset-v9", "v1", "dataset-v1^", "main"):
        with pytest.raises(V.VersioningError) as exc:
            V.rollback(repo, bad)
        assert str(exc.value) == f"unknown release tag {bad!r} (releases: dataset-v1, dataset-v2)"
    assert git(repo, "rev-parse", "HEAD") == head


def test_failed_git_command_raises_versioning_error_with_stderr(repo):
    with pytest.raises(V.VersioningError) as exc:
        V.git(repo, "rev-parse", "no-such-ref")
    msg = str(exc.value)
    assert msg.startswith(f"`git rev-parse no-such-ref` failed in {repo}: ")
    assert V.git(repo, "rev-parse", "no-such-ref", check=False) == "no-such-ref"


def test_release_commit_and_rollback_round_trip(repo, template):
    ws = Workspace.at(repo)
    root, counter = ws.root, ws.state / "release_counter"
    # the copy's DVC remote still points at the template's: point it at its own (as `dvc remote add -f` would)
    conf = root / ".dvc" / "config"
    conf.write_text(conf.read_text().replace(str(template), str(root)))
    git(root, "commit", "-q", "-am", "remote of the copy")
    (root / "tables" / "labels").mkdir(parents=True)
    (root / "tables" / "labels" / "part-00000.parquet").write_bytes(b"labels v1")
    (root / "release").mkdir()
    (root / "release" / "manifest.json").write_text('{"v": 1}\n')
    (root / "release" / "labels.json").write_text("[1]\n")
    one = V.commit_release(root, 1, "first release", SHA_A, counter)
    assert one["tag"] == "dataset-v1" and one["dvc_md5"].endswith(".dir")
    assert counter.read_text() == "1"
    md5 = one["dvc_md5"].removesuffix(".dir")
    assert (ws.dvc_remote / "files" / "md5" / md5[:2] / (md5[2:] + ".dir")).is_file()  # pushed

    (root / "release" / "manifest.json").write_text('{"v": 2}\n')
    (root / "release" / "extra.txt").write_text("added in v2\n")
    two = V.commit_release(root, 2, "second release", SHA_B, counter, push=False)
    assert two["tag"] == "dataset-v2" and two["dvc_md5"] != one["dvc_md5"]
    tags = V.release_tags(root)
    assert [(t["tag"], t["git_sha"], t["content_sha256"], t["subject"]) for t in tags] == [
        ("dataset-v1", one["git_sha"], SHA_A, "first release"), ("dataset-v2", two["git_sha"], SHA_B, "second release")]

    back = V.rollback(root, "dataset-v1")
    assert back["tag"] == "dataset-v1" and back["dvc_md5"] == one["dvc_md5"]
    assert sorted(p.name for p in (root / "release").iterdir()) == ["labels.json", "manifest.json"]
    assert (root / "release" / "manifest.json").read_text() == '{"v": 1}\n'
    assert git(root, "log", "-1", "--format=%s") == "rollback release/ to dataset-v1"
    assert [t["tag"] for t in V.release_tags(root)] == ["dataset-v1", "dataset-v2"]  # later tag kept
    git(root, "tag", "-d", "dataset-v2")
    assert V.next_release_number(root, counter) == 3  # N is never reused


def test_a_failed_command_says_the_lines_that_name_the_cause(tmp_path):
    """DVC ends every error with its support advice; git explains a lock over five lines. The
    message keeps the lines that name the cause, not the last line."""
    from labelloop.workspace.versioning import failure_lines

    dvc_out = ("ERROR: failed to push data to the cloud - 3 files failed to upload\n"
               "ERROR: unexpected error - [Errno 28] No space left on device\n\n"
               "Having any troubles? Hit us up at https://dvc.org/support, we are always happy to help!\n")
    assert failure_lines(dvc_out) == ("ERROR: failed to push data to the cloud - 3 files failed to upload | "
                                      "ERROR: unexpected error - [Errno 28] No space left on device")
    (tmp_path / "r").mkdir()
    V.git(tmp_path / "r", "init", "-q")
    with pytest.raises(V.VersioningError) as err:  # a real git failure, through git()
        V.git(tmp_path / "r", "rev-parse", "no-such-rev")
    msg = str(err.value)
    assert "fatal: ambiguous argument 'no-such-rev'" in msg and "\n" not in msg
