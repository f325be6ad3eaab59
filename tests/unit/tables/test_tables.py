"""Atomic Parquet tables (labelloop.tables.parquet) on real files."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelloop import tables
from labelloop.tables import parquet
from labelloop.tables.schemas import IMAGES, LABELS, REVIEW_QUEUE

QUEUE_ROWS = [
    {"image_id": "a", "source_path": "a.jpg", "route": "auto_accept", "priority": 0.1, "reason": "all 1",
     "policy_id": "policy-000000000000", "n_predictions": 1, "min_score": 0.9},
    {"image_id": "b", "source_path": "sub/b.jpg", "route": "human_review", "priority": 1.0,
     "reason": "no prediction at or above its low threshold", "policy_id": "policy-000000000000",
     "n_predictions": 0, "min_score": None},
]


def full(row: dict, schema: pa.Schema = REVIEW_QUEUE) -> dict:
    return {n: row.get(n) for n in schema.names}


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_to_table_fills_missing_keys_with_null_and_keeps_types():
    t = tables.to_table(QUEUE_ROWS, REVIEW_QUEUE)
    assert t.schema == REVIEW_QUEUE
    assert t.to_pylist() == [full(r) for r in QUEUE_ROWS]
    assert t.column("exported_to").null_count == 2
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        tables.to_table([{"image_id": "a", "n_predictions": "many"}], REVIEW_QUEUE)


def test_write_is_atomic_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "tables" / "review_queue" / "b1.parquet"
    assert tables.write_rows(QUEUE_ROWS, REVIEW_QUEUE, path) == path
    assert listing(path.parent) == ["b1.parquet"]
    assert pq.read_schema(path).names == REVIEW_QUEUE.names
    assert tables.read_rows(path, REVIEW_QUEUE) == [full(r) for r in QUEUE_ROWS]
    # overwrite in place: still one file, the new content
    tables.write_rows(QUEUE_ROWS[:1], REVIEW_QUEUE, path)
    assert listing(path.parent) == ["b1.parquet"]
    assert tables.read_rows(path, REVIEW_QUEUE) == [full(QUEUE_ROWS[0])]


def test_bbox_lists_round_trip(tmp_path):
    row = {"label_id": "lb-1", "image_id": "a", "category": "face", "bbox": [1.5, 2.0, 30.25, 40.0],
           "origin": "human", "score": None}
    path = tables.write_rows([row], LABELS, tmp_path / "labels.parquet")
    (back,) = tables.read_rows(path, LABELS)
    assert back == full(row, LABELS)
    assert tables.read_table(path, LABELS).schema.field("bbox").type == pa.list_(pa.float64(), 4)


@pytest.mark.parametrize("missing", ["nope.parquet", "nope-folder"])
def test_missing_path_reads_as_empty_table_of_the_schema(tmp_path, missing):
    t = tables.read_table(tmp_path / missing, IMAGES)
    assert t.num_rows == 0 and t.schema == IMAGES
    assert tables.read_rows(tmp_path / missing, IMAGES) == []


def test_empty_folder_reads_as_empty_table(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "notes.txt").write_text("not parquet")
    t = tables.read_table(tmp_path / "t", REVIEW_QUEUE)
    assert t.num_rows == 0 and t.schema == REVIEW_QUEUE


def test_folder_concatenates_parts_sorted_by_name_and_ignores_temp_files(tmp_path):
    folder = tmp_path / "review_queue"
    # written out of name order, so neither creation order nor mtime gives the expected order
    for name, iid in (("part-00010.parquet", "c"), ("part-00000.parquet", "a"), ("part-00001.parquet", "b")):
        tables.write_rows([{"image_id": iid, "source_path": f"{iid}.jpg"}], REVIEW_QUEUE, folder / name)
    # a finished-looking temporary file and a half-written one: both ignored
    tables.write_rows([{"image_id": "tmp"}], REVIEW_QUEUE, folder / "elsewhere.parquet")
    (folder / "elsewhere.parquet").rename(folder / ".tmp-abc123.parquet")
    (folder / ".tmp-half.parquet").write_bytes(b"PAR1\x00\x00garbage")
    t = tables.read_table(folder, REVIEW_QUEUE)
    assert t.schema == REVIEW_QUEUE
    assert t.column("image_id").to_pylist() == ["a", "b", "c"]
    assert t.column("source_path").to_pylist() == ["a.jpg", "b.jpg", "c.jpg"]


def test_file_with_fewer_columns_reads_with_nulls(tmp_path):
    path = tmp_path / "old.parquet"
    pq.write_table(pa.table({"image_id": ["a", "b"], "route": ["auto_accept", "human_review"],
                             "priority": [0.2, 1.0]}), path)
    t = tables.read_table(path, REVIEW_QUEUE)
    assert t.schema == REVIEW_QUEUE
    assert t.to_pylist() == [
        full({"image_id": "a", "route": "auto_accept", "priority": 0.2}),
        full({"image_id": "b", "route": "human_review", "priority": 1.0}),
    ]
    assert t.column("n_predictions").type == pa.int32() and t.column("n_predictions").null_count == 2


def test_old_and_new_parts_mix_in_one_folder(tmp_path):
    folder = tmp_path / "q"
    folder.mkdir()
    pq.write_table(pa.table({"image_id": ["old"], "n_predictions": pa.array([2], pa.int64())}),
                   folder / "part-00000.parquet")
    tables.write_rows(QUEUE_ROWS[:1], REVIEW_QUEUE, folder / "part-00001.parquet")
    rows = tables.read_rows(folder, REVIEW_QUEUE)
    assert rows == [full({"image_id": "old", "n_predictions": 2}), full(QUEUE_ROWS[0])]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "t" / "queue.parquet"
    tables.write_rows(QUEUE_ROWS, REVIEW_QUEUE, path)
    before = path.read_bytes()

    def boom(table, where, *a, **k):
        where.write(b"PAR1 half")  # a half-written temporary file, then the failure
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(parquet.pq, "write_table", boom)
    with pytest.raises(OSError, match="No space left on device") as err:
        tables.write_rows(QUEUE_ROWS[:1], REVIEW_QUEUE, path)
    assert err.value.filename == str(path)  # a full disk names the file being written
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert listing(path.parent) == ["queue.parquet"]
    assert tables.read_rows(path, REVIEW_QUEUE) == [full(r) for r in QUEUE_ROWS]


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(parquet.pq, "write_table", boom)
    with pytest.raises(KeyboardInterrupt):
        tables.write_rows(QUEUE_ROWS, REVIEW_QUEUE, tmp_path / "t" / "x.parquet")
    assert listing(tmp_path / "t") == []
