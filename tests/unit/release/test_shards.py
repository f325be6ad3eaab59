"""labelloop.release.shards on real photos: tar shards readable by tarfile, index offsets, content
addressing, reuse of unchanged shards across releases, and bad names / damaged shards."""

from __future__ import annotations

import hashlib
import tarfile

import pytest

from labelloop.release.shards import ShardError, read_index, read_member, write_shards
from support.helpers import skimage_data

NAMES = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg"]


@pytest.fixture()
def files():
    sk = skimage_data()
    return {f"images/train/{n}": sk / n for n in NAMES}


def test_members_round_trip_by_offset_and_by_tarfile(files, tmp_path):
    rows = write_shards(files, tmp_path / "s", prefix="train", target_bytes=300_000)
    assert [r["name"] for r in rows] == sorted(files)
    shards = sorted({r["shard"] for r in rows})
    assert len(shards) > 1 and all(s.startswith("train-") and s.endswith(".tar") for s in shards)
    for s in shards:  # named after their own bytes
        assert hashlib.sha256((tmp_path / "s" / s).read_bytes()).hexdigest()[:16] == s[len("train-"):-4]
    assert read_index(tmp_path / "s") == rows
    for r in rows:
        data = files[r["name"]].read_bytes()
        assert read_member(tmp_path / "s", r) == data and r["size"] == len(data)
        with tarfile.open(tmp_path / "s" / r["shard"]) as tar:  # what WebDataset-style readers do
            assert tar.extractfile(r["name"]).read() == data


def test_same_content_same_shards_and_unchanged_shards_are_reused(files, tmp_path):
    a = write_shards(files, tmp_path / "a", target_bytes=300_000)
    b = write_shards(files, tmp_path / "b", target_bytes=300_000)
    assert a == b and (tmp_path / "a" / a[0]["shard"]).read_bytes() == (tmp_path / "b" / b[0]["shard"]).read_bytes()
    more = {**files, "images/train/zz-motorcycle_left.png": skimage_data() / "motorcycle_left.png"}
    c = write_shards(more, tmp_path / "c", target_bytes=300_000, previous=tmp_path / "a")
    old = {r["name"]: r["shard"] for r in a}
    assert all(r["shard"] == old[r["name"]] for r in c if r["name"] in old)  # every old shard kept
    new = {r["shard"] for r in c} - set(old.values())
    assert len(new) == 1 and (tmp_path / "c" / a[0]["shard"]).stat().st_ino == (tmp_path / "a" / a[0]["shard"]).stat().st_ino


def test_changed_member_repacks_only_its_shard(files, tmp_path):
    a = write_shards(files, tmp_path / "a", target_bytes=300_000)
    changed = dict(files)
    changed["images/train/rocket.jpg"] = skimage_data() / "camera.png"  # other bytes under the same name
    c = write_shards(changed, tmp_path / "c", target_bytes=300_000, previous=tmp_path / "a")
    moved = {r["shard"] for r in a if r["name"] == "images/train/rocket.jpg"}
    kept = {r["shard"] for r in a} - moved
    assert kept <= {r["shard"] for r in c} and not moved & {r["shard"] for r in c}
    row = next(r for r in c if r["name"] == "images/train/rocket.jpg")
    assert read_member(tmp_path / "c", row) == (skimage_data() / "camera.png").read_bytes()


@pytest.mark.parametrize("name", ["/abs.png", "../up.png", "a/../../b.png", "x" * 101, "./a.png", "a//b.png",
                                  "a/", "", "a\\..\\b.png"])
def test_bad_member_names_are_refused(tmp_path, name):
    with pytest.raises(ShardError, match="member name"):
        write_shards({name: skimage_data() / "camera.png"}, tmp_path / "s")
    assert not list((tmp_path / "s").glob("*.tar"))


def test_damaged_shard_is_reported(files, tmp_path):
    rows = write_shards(files, tmp_path / "s")
    p = tmp_path / "s" / rows[0]["shard"]
    data = bytearray(p.read_bytes())
    data[rows[0]["offset"] + 10] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=f"{rows[0]['shard']}: member {rows[0]['name']} does not match"):
        read_member(tmp_path / "s", rows[0])


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "index"])
def test_a_damaged_previous_release_is_repacked_not_copied(files, tmp_path, damage):
    """A previous shard whose bytes changed (or vanished), or an unreadable previous index, was
    hard-linked into the new release or crashed it; now its members are packed again."""
    a = write_shards(files, tmp_path / "a", target_bytes=300_000)
    p = tmp_path / "a" / a[0]["shard"]
    if damage == "flip":
        data = bytearray(p.read_bytes())
        data[a[0]["offset"] + 10] ^= 0xFF
        p.write_bytes(bytes(data))
    elif damage == "truncate":
        p.write_bytes(p.read_bytes()[: a[0]["offset"] + 100])
    elif damage == "delete":
        p.unlink()
    else:
        (tmp_path / "a" / "index.parquet").write_bytes(b"PAR1 not parquet")
    c = write_shards(files, tmp_path / "c", target_bytes=300_000, previous=tmp_path / "a")
    assert c == write_shards(files, tmp_path / "fresh", target_bytes=300_000)  # what a clean build gives
    for r in c:
        assert read_member(tmp_path / "c", r) == files[r["name"]].read_bytes()


@pytest.mark.parametrize("change, match", [
    ({"shard": "../a/x.tar"}, "outside"), ({"offset": -5}, "not byte counts"), ({"size": -1}, "not byte counts"),
])
def test_an_index_row_outside_its_folder_or_negative_is_refused(files, tmp_path, change, match):
    rows = write_shards(files, tmp_path / "s")
    with pytest.raises(ShardError, match=match):
        read_member(tmp_path / "s", rows[0] | change)
