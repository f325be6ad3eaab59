"""Odd S3 objects on ingest, against moto's S3 server on loopback: keys with spaces, '#', '?',
'%', '+', glob characters and non-ASCII letters, a zero-byte object, and a key that is both an
object and a "folder" of other objects (``f.jpg`` and ``f.jpg/inner.jpg``)."""

from __future__ import annotations

import pytest

from labelloop.images.files import ImageError, inspect_image, load_rgb
from labelloop.ingest.files import ingest
from labelloop.store import StoreSettings
from labelloop.workspace.layout import Workspace, WorkspaceError, read_manifest
from support.moto_server import CREDENTIALS

pytestmark = pytest.mark.s3

JPEG_HEAD = b"\xff\xd8\xff"
KEYS = ["a b.jpg", "x#y.jpg", "q?v=1.jpg", "p%20c.jpg", "ü.jpg", "a+b.jpg", "star*.jpg", "br[1].jpg",
        "zero.jpg", "f.jpg", "f.jpg/inner.jpg"]


@pytest.fixture(scope="module")
def source(moto_server):
    """A bucket ``break-src`` whose prefix ``d/`` holds one object per :data:`KEYS` (bytes name it)."""
    c = moto_server["client"]
    c.create_bucket(Bucket="break-src")
    c.create_bucket(Bucket="break-store")
    for k in KEYS:
        c.put_object(Bucket="break-src", Key=f"d/{k}", Body=b"" if k == "zero.jpg" else JPEG_HEAD + k.encode())
    return "s3://break-src/d"


@pytest.fixture(autouse=True)
def _creds(monkeypatch):
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)


def test_odd_keys_ingest_into_an_s3_store_byte_for_byte(source, moto_server, tmp_path):
    ws = Workspace(tmp_path, StoreSettings(url="s3://break-store/p", endpoint_url=moto_server["url"]))
    res = ingest(ws, source, "b1")
    assert sorted(res.copied) == sorted(KEYS) and res.skipped == []
    rows = {r["source_path"]: r for r in read_manifest(ws, "b1")}
    for k in KEYS:
        assert rows[k]["uri"] == f"s3://break-store/p/inbox/b1/{k}"
        assert ws.locate(rows[k]["uri"]).read_bytes() == (b"" if k == "zero.jpg" else JPEG_HEAD + k.encode())
    with pytest.raises(ImageError, match="zero.jpg"):  # a zero-byte object is a clear error naming it
        load_rgb(ws.locate(rows["zero.jpg"]["uri"]))
    zero = inspect_image(ws.locate(rows["zero.jpg"]["uri"]), 10**8)  # the raw_images row: rejected with a reason
    assert (zero["status"], zero["reject_reason"]) == ("rejected", "empty: zero-byte file")
    odd = inspect_image(ws.locate(rows["q?v=1.jpg"]["uri"]), 10**8)  # read back by its URI: '?' is part of the key
    assert odd["bytes"] == len(JPEG_HEAD + b"q?v=1.jpg") and odd["reject_reason"].startswith("corrupt: JPEG")


def test_an_object_that_is_also_a_folder_is_skipped_with_a_reason_on_a_local_inbox(source, moto_server, tmp_path):
    """'f.jpg' and 'f.jpg/inner.jpg' cannot both be files locally: was a FileExistsError that
    aborted the whole ingest (files copied, no manifest written); now the second is skipped."""
    ws = Workspace(tmp_path, StoreSettings(endpoint_url=moto_server["url"]))
    res = ingest(ws, source, "b1")
    assert sorted(res.copied) == sorted(k for k in KEYS if k != "f.jpg/inner.jpg")
    ((what, why),) = res.skipped
    assert what == "f.jpg/inner.jpg" and "cannot be stored at" in why and "inbox/b1/f.jpg/inner.jpg" in why
    assert {r["source_path"] for r in read_manifest(ws, "b1")} == set(res.copied)
    assert (tmp_path / "inbox" / "b1" / "q?v=1.jpg").read_bytes() == JPEG_HEAD + b"q?v=1.jpg"
    again = ingest(ws, source, "b1")  # a re-run changes nothing
    assert again.copied == [] and sorted(again.already_ingested) == sorted(res.copied)


def test_a_store_bucket_that_does_not_exist_stops_the_ingest(moto_server, tmp_path):
    """Was: every source file skipped as 'unreadable: The specified bucket does not exist',
    blaming the (readable) source for the store's missing bucket."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.jpg").write_bytes(JPEG_HEAD + b"a")
    ws = Workspace(tmp_path / "ws", StoreSettings(url="s3://no-such-bucket-x/p", endpoint_url=moto_server["url"]))
    with pytest.raises(WorkspaceError, match=r"cannot store a\.jpg at s3://no-such-bucket-x/p/inbox/b1/a\.jpg: .*bucket"):
        ingest(ws, src, "b1")
    assert read_manifest(ws, "b1") == []
