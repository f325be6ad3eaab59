"""Every table's typed row matches its Arrow schema: the same columns, in the same order, with
Python types that hold what the Arrow types store; and a table written from rows reads back as
the same rows."""

from __future__ import annotations

import types
import typing

import pyarrow as pa
import pytest

from labelloop import tables
from labelloop.tables import schemas

PAIRS = [(name.removesuffix("Row"), obj) for name, obj in vars(schemas).items()
         if isinstance(obj, type) and typing.is_typeddict(obj)]
SCHEMA_OF = {"Image": "IMAGES", "Prediction": "PREDICTIONS", "ReviewQueue": "REVIEW_QUEUE",
             "ExportedPrediction": "EXPORTED_PREDICTIONS", "Review": "REVIEWS", "HumanLabel": "HUMAN_LABELS",
             "Label": "LABELS", "ResolvedImage": "RESOLVED_IMAGES", "Reject": "REJECTS", "GoldLabel": "GOLD_LABELS",
             "GoldImage": "GOLD_IMAGES", "LabelSuspect": "LABEL_SUSPECTS", "CalibrationOutcome": "CALIBRATION_OUTCOMES",
             "ReleaseImage": "RELEASE_IMAGES", "ReleaseLineage": "RELEASE_LINEAGE", "Lineage": "LINEAGE",
             "SplitAssignment": "SPLIT_ASSIGNMENTS", "CocoId": "COCO_IDS",
             "Model": "MODELS", "HumanTag": "HUMAN_TAGS"}


def python_type(arrow: pa.DataType):
    if pa.types.is_string(arrow):
        return str
    if pa.types.is_boolean(arrow):
        return bool
    if pa.types.is_integer(arrow):
        return int
    if pa.types.is_floating(arrow):
        return float
    if pa.types.is_list(arrow) or pa.types.is_fixed_size_list(arrow):
        return list[python_type(arrow.value_type)]
    raise AssertionError(f"no Python type for {arrow}")


def test_every_schema_has_its_row_type():
    declared = {name for name, obj in vars(schemas).items() if isinstance(obj, pa.Schema)}
    assert declared == set(SCHEMA_OF.values())
    assert {stem for stem, _ in PAIRS} == set(SCHEMA_OF)


@pytest.mark.parametrize("stem,row", PAIRS, ids=[s for s, _ in PAIRS])
def test_row_type_has_the_schema_columns_and_types(stem, row):
    schema = getattr(schemas, SCHEMA_OF[stem])
    hints = typing.get_type_hints(row)
    assert list(hints) == schema.names  # same columns, same order
    for field in schema:
        hint = hints[field.name]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        assert python_type(field.type) in [a for a in args if a is not type(None)], (field.name, hint, field.type)


@pytest.mark.parametrize("stem,row", PAIRS, ids=[s for s, _ in PAIRS])
def test_rows_round_trip_through_parquet(stem, row, tmp_path):
    schema = getattr(schemas, SCHEMA_OF[stem])
    sample = {}
    for f in schema:
        t = python_type(f.type)
        sample[f.name] = {str: f"{f.name}-1", int: 7, float: 0.5, bool: True}.get(t, [1.0, 2.0, 3.0, 4.0])
    path = tables.write_rows([sample], schema, tmp_path / "t.parquet")
    assert tables.read_rows(path, schema) == [sample]
