"""The QA gates are declared once (labelloop.qa.gates.GATES): every gate a real QA report carries
is declared, the qa_report asset has one check per declared gate with the same blocking flag, and
every declared threshold setting exists in labelloop.yaml's QA settings."""

from __future__ import annotations

import dagster as dg
import pytest

import assets.qa
from labelloop.qa.gates import GATES, failed_gates, gate_result
from labelloop.workspace import repo
from labelloop.workspace.config import DEFAULT_CONFIG, load_config
from labelloop.workspace.layout import Workspace
from support.helpers import cli


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The QA report the demo's qa_report materialization wrote."""
    root = tmp_path_factory.mktemp("gates") / "ws"
    cli(root, "demo")
    return repo.read_qa(Workspace.at(root))


def test_every_gate_of_a_report_is_declared_once_with_its_blocking_flag(report):
    declared = {g.name: g for g in GATES}
    assert len(declared) == len(GATES)
    assert [g["name"] for g in report["gates"]] == [g.name for g in GATES]  # all of them, in declaration order
    for g in report["gates"]:
        assert g["blocking"] == declared[g["name"]].blocking


def test_the_asset_has_one_check_per_declared_gate():
    specs = {s.name: s for s in assets.qa.qa_report.check_specs}
    assert set(specs) == {g.name for g in GATES}
    for g in GATES:
        assert specs[g.name].blocking == g.blocking and specs[g.name].asset_key == dg.AssetKey("qa_report")


def test_threshold_settings_exist():
    qa = load_config(DEFAULT_CONFIG).qa
    for g in GATES:
        if g.threshold_key:
            section, key = g.threshold_key.split(".")
            assert section == "qa" and hasattr(qa, key), g


def test_an_undeclared_gate_cannot_be_reported_and_only_blocking_failures_stop():
    with pytest.raises(KeyError):
        gate_result("made_up_gate", "fail", 1, 0, "no such gate")
    report = {"gates": [gate_result("guidelines_agreement", "fail", 0.1, 0.6, "x"),
                        gate_result("schema_valid", "fail", 2, 0, "2 labels invalid"),
                        gate_result("gold_mean_iou", "warn", 0.4, 0.5, "y")]}
    assert [g["name"] for g in failed_gates(report)] == ["schema_valid"]
