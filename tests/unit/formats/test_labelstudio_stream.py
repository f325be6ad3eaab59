"""Label Studio exports streamed task by task (ijson) instead of loaded whole: the same records as
the whole-file parse, and a bounded memory peak (labelloop.formats.labelstudio.reader,
labelloop.review.files, labelloop.review.importer)."""

from __future__ import annotations

import gc
import io
import json
import tracemalloc

import pytest

from labelloop.formats.labelstudio import ExportFormatError, parse_export
from labelloop.formats.labelstudio.reader import stream_export
from labelloop.review.files import read_review_file
from labelloop.review.importer import import_file
from support.helpers import ls_fixtures
from support.review_inbox import make_template, repeated_ls_export

FX = ls_fixtures()


def _streamed(data: bytes, where: str = "x.json"):
    stream = stream_export(io.BytesIO(data), where=where)
    return list(stream), stream


@pytest.mark.parametrize("name", ["export_json.json", "export_json_min.json"])
def test_streamed_records_are_the_records_of_the_whole_file_parse(name):
    data = (FX / name).read_bytes()
    records, stream = _streamed(data)
    assert records == parse_export(json.loads(data)) and records
    assert stream.container == ("project-1" if name == "export_json.json" else None)


def test_a_large_synthetic_export_streams_to_the_same_records():
    data = repeated_ls_export(3000, indent=1)
    records, stream = _streamed(data)
    assert records == parse_export(json.loads(data)) and len(records) == 3000 and stream.container == "project-1"


def test_read_review_file_gives_the_same_records_and_source_as_before(tmp_path):
    p = tmp_path / "e.json"
    p.write_bytes(b"\xef\xbb\xbf" + (FX / "export_json.json").read_bytes())  # a BOM is tolerated
    got = read_review_file(p)
    assert got["format"] == "label-studio" and got["default_source"] == "label-studio/project-1"
    assert got["records"] == parse_export(json.loads((FX / "export_json.json").read_bytes()))


@pytest.mark.parametrize("body, match", [
    (b"[1, 2]", "item at index 0 is a int, expected an object"),
    (b'[{"data": {"image": "a.png"}, "predictions": []}]', "import file"),
    (b'[{"id": 1, "annotations": []}, {"id": 2, "annotation_id": 3, "annotator": 1}]', "mixes"),
    (b'[{"id": 1, "annotations": []}, {"id": 2}]', "item at index 1 looks like neither"),
    ((b'[{"id": 1, "annotations": [{"id": 1, "updated_at": "t"}], "project": 1},'
      b' {"id": 2, "annotations": [{"id": 2, "updated_at": "t"}], "project": 2}]'), "several Label Studio projects"),
    (b'[{"id": 1, "annotations": []}', "not valid JSON"),
    (b'[{"id": 1, "annotations": []}] trailing', "not valid JSON"),
    (b'[{"id": "\xff\xfe", "annotations": []}]', "not"),
])
def test_a_malformed_stream_is_a_format_error_naming_the_file(body, match):
    with pytest.raises(ExportFormatError, match=match) as err:
        _streamed(body, where="bad.json")
    assert str(err.value).startswith("bad.json: ") and "\n" not in str(err.value)


def _peak(fn) -> tuple[int, object]:
    gc.collect()
    tracemalloc.start()
    try:
        out = fn()
        return tracemalloc.get_traced_memory()[1], out
    finally:
        tracemalloc.stop()


def test_a_50_mb_export_imports_with_a_fraction_of_the_whole_file_parse_memory(tmp_path):
    """Was: the whole file read, then parsed to one JSON tree, then to records (a 195 MB export:
    1.13 GiB). Streamed, a re-export's import holds one task at a time, the records it
    imports and the store's known keys."""
    from labelloop.review.store import review_store
    from labelloop.workspace.layout import Workspace

    ws = Workspace.at(make_template(tmp_path / "ws"))
    n = 22_000
    path = ws.review_inbox / "big.json"
    path.write_bytes(repeated_ls_export(n, indent=1))
    size = path.stat().st_size
    assert 45 * 2**20 < size < 60 * 2**20, size
    first = import_file(ws, path)
    assert first["reviews"] == n and first.get("error") is None
    whole, records = _peak(lambda: parse_export(json.loads(path.read_bytes())))
    assert len(records) == n
    del records
    # a re-export of the project a little later: the same tasks, one more
    tasks_tail = repeated_ls_export(n + 1, indent=1)
    path.write_bytes(tasks_tail)
    streamed, again = _peak(lambda: import_file(ws, path))
    assert again["reviews"] == 1 and again["skipped"] == n, again
    print(f"\n{size / 2**20:.1f} MiB export: whole-file parse peak {whole / 2**20:.1f} MiB, "
          f"streamed re-import peak {streamed / 2**20:.1f} MiB")
    assert streamed < whole / 3, (streamed, whole)
    assert len(review_store(ws).reviews()) == n + 1


def test_json_nested_past_the_depth_bound_is_refused_before_ijson_pays_for_it(tmp_path):
    """100,000 brackets (200 KB) took more than 2 GiB in ijson's per-level prefixes and the
    process was killed; brackets and escaped quotes inside strings do not count as nesting."""
    import resource

    from labelloop.formats.labelstudio.reader import MAX_JSON_DEPTH
    from support.helpers import FIXTURES

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ExportFormatError, match=f"deep.json: JSON nested more than {MAX_JSON_DEPTH} deep"):
        list(read_review_file(deep)["records"])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: no blow-up
    tasks = json.loads((FIXTURES / "label-studio-1.23.2" / "export_json.json").read_text())
    tasks[0]["data"]["note"] = 'a "quoted" \\\\ [[[[ {{{{ string \\" ]]'
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps(tasks))
    assert [r["error"] for r in read_review_file(ok)["records"]] == [None, None, None]
