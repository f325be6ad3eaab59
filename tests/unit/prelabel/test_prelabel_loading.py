"""Checkpoint identity and loading: sha256 of files and directories, clear errors naming the
expected path and hash, weights-only .pth loading, the hash-printing command."""

from __future__ import annotations

import collections
import hashlib

import pytest
import torch

from labelloop.prelabel.backends.loading import (
    CheckpointError,
    load_state_dict,
    main,
    resolve_path,
    sha256_path,
    verify_checkpoint,
)


def test_sha256_of_a_file_is_sha256sum(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"abc" * 1000)
    assert sha256_path(f) == hashlib.sha256(b"abc" * 1000).hexdigest()


def test_sha256_of_a_directory_is_its_sorted_listing(tmp_path):
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "sub" / "b.bin").write_bytes(b"\x00\x01")
    listing = "".join(f"{rel}\0{hashlib.sha256(data).hexdigest()}\n"
                      for rel, data in sorted([("config.json", b"{}"), ("sub/b.bin", b"\x00\x01")]))
    expected = hashlib.sha256(listing.encode()).hexdigest()
    assert sha256_path(d) == expected
    (d / ".cache").mkdir()
    (d / ".cache" / "x").write_text("ignored")
    (d / ".DS_Store").write_text("ignored")
    assert sha256_path(d) == expected  # hidden files and folders are left out
    (d / "sub" / "b.bin").write_bytes(b"\x00\x02")
    assert sha256_path(d) != expected


def test_missing_checkpoint_names_path_and_hash(tmp_path):
    want = "a" * 64
    with pytest.raises(CheckpointError) as e:
        verify_checkpoint(tmp_path / "sam_vit_h_4b8939.pth", want, "segmenter sam (vit_h)")
    msg = str(e.value)
    assert str(tmp_path / "sam_vit_h_4b8939.pth") in msg and want in msg and "never downloaded" in msg


def test_mismatched_checkpoint_names_both_hashes(tmp_path):
    f = tmp_path / "w.pth"
    f.write_bytes(b"not the weights")
    want = "b" * 64
    with pytest.raises(CheckpointError) as e:
        verify_checkpoint(f, want, "segmenter sam")
    assert want in str(e.value) and sha256_path(f) in str(e.value) and str(f) in str(e.value)


def test_wrong_kind_of_checkpoint(tmp_path):
    f = tmp_path / "gd"
    f.write_text("a file, not a save_pretrained folder")
    with pytest.raises(CheckpointError, match="not a directory"):
        verify_checkpoint(f, sha256_path(f), "detector grounding-dino", kind="dir")
    with pytest.raises(CheckpointError, match="not a file"):
        verify_checkpoint(tmp_path, sha256_path(tmp_path), "segmenter sam", kind="file")


def test_state_dict_loads_weights_only(tmp_path):
    f = tmp_path / "w.pth"
    sd = collections.OrderedDict(w=torch.arange(6, dtype=torch.float32).reshape(2, 3), b=torch.ones(2))
    torch.save({"model": sd}, f)  # a wrapped checkpoint is unwrapped
    out = load_state_dict(f, sha256_path(f), "test")
    assert set(out) == {"w", "b"} and torch.equal(out["w"], sd["w"])


class Payload:  # a pickled object weights_only refuses to build
    def __init__(self):
        self.x = 1


def test_pickled_code_is_refused(tmp_path):
    f = tmp_path / "evil.pth"
    torch.save({"w": torch.ones(1), "obj": Payload()}, f)
    with pytest.raises(CheckpointError, match="holds pickled code") as err:
        load_state_dict(f, sha256_path(f), "segmenter sam")
    msg = str(err.value)  # one line naming the file, what it holds and what to do (torch's own is ~20 lines)
    assert "\n" not in msg and str(f) in msg and "Payload" in msg and "state_dict()" in msg
    g = tmp_path / "list.pth"
    torch.save([torch.ones(1)], g)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_state_dict(g, sha256_path(g), "segmenter sam")
    h = tmp_path / "truncated.pth"
    h.write_bytes(f.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="not a loadable") as err:
        load_state_dict(h, sha256_path(h), "segmenter sam")
    assert "\n" not in str(err.value)


def test_relative_paths_resolve_against_the_workspace(tmp_path):
    assert resolve_path("models/x.pth", tmp_path) == tmp_path.resolve() / "models" / "x.pth"
    assert resolve_path(tmp_path / "abs.pth", "/elsewhere") == tmp_path / "abs.pth"


def test_hash_command_prints_sha256sum_format(tmp_path, capsys):
    f = tmp_path / "w.pth"
    f.write_bytes(b"weights")
    assert main([str(f)]) == 0
    assert capsys.readouterr().out == f"{hashlib.sha256(b'weights').hexdigest()}  {f}\n"
    assert main([str(tmp_path / "missing")]) == 1
    assert main([]) == 2
