"""guidelines.md: the template ``labelloop init`` writes, its version (sha256 of the bytes), a
missing file recorded as "none" with a warning, the HTML set as Label Studio's instructions, and
how a release note and ``labelloop diff`` report the version."""

from __future__ import annotations

import hashlib

import pytest

from labelloop.release.cut import release_note
from labelloop.release.diff import ReleaseView, diff_releases, format_diff, summary_lines
from labelloop.workspace.config import load_config
from labelloop.workspace.guidelines import (
    GUIDELINES_FILE,
    NO_GUIDELINES,
    GuidelinesWarning,
    guidelines_html,
    guidelines_sha256,
    read_guidelines,
    read_guidelines_bytes,
    template,
    write_template,
)
from labelloop.workspace.init import package_text

SHA1, SHA2 = "a" * 64, "b" * 64


@pytest.fixture
def cfg(tmp_path):
    p = tmp_path / "labelloop.yaml"
    p.write_text(package_text("labelloop.yaml"), encoding="utf-8")
    return load_config(p)


def test_the_template_has_a_section_per_category_and_the_rules(cfg):
    text = template(cfg)
    for c in ("person", "face", "cat"):
        assert f"### {c}" in text
    assert "- Definition: a human face." in text  # the category's prompt
    assert "a mask (brush)" in text.split("### face")[0].split("### person")[1]  # person has masks: true
    for head in ("## What not to label", "## Minimum object size", "## Truncation", "## Occlusion"):
        assert head in text
    assert "at least 10 pixels on its shorter side" in text


def test_write_template_never_overwrites_and_the_version_is_the_sha256_of_the_bytes(cfg, tmp_path):
    assert write_template(tmp_path, cfg) is True
    path = tmp_path / GUIDELINES_FILE
    assert guidelines_sha256(tmp_path) == hashlib.sha256(path.read_bytes()).hexdigest()
    path.write_text("# ours\n\n- only whole cats\n", encoding="utf-8")
    assert write_template(tmp_path, cfg) is False
    text, sha = read_guidelines(tmp_path)
    assert text == "# ours\n\n- only whole cats\n"
    assert sha == hashlib.sha256(b"# ours\n\n- only whole cats\n").hexdigest()


def test_a_missing_file_warns_naming_it_and_records_none(tmp_path):
    with pytest.warns(GuidelinesWarning, match=rf"{tmp_path / GUIDELINES_FILE} is missing.*'none'"):
        assert read_guidelines(tmp_path) == (None, NO_GUIDELINES)


def test_a_folder_in_place_of_the_file_is_recorded_as_none(tmp_path):
    (tmp_path / GUIDELINES_FILE).mkdir()
    with pytest.warns(GuidelinesWarning, match="cannot be read"):
        assert guidelines_sha256(tmp_path) == NO_GUIDELINES


def test_the_instructions_html_renders_markdown_escapes_raw_html_and_names_the_version():
    html = guidelines_html("# Rules\n\n- box the *visible* part\n\n<script>alert(1)</script>\n", SHA1)
    assert "<h1>Rules</h1>" in html and "<em>visible</em>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.rstrip().endswith(f"labelloop guidelines sha256 {SHA1}</small></p>")


def view(name, sha):
    return ReleaseView(name, [], [], {}, {} if sha is None else {"guidelines_sha256": sha})


def test_diff_says_when_the_guidelines_changed_with_both_sha256():
    d = diff_releases(view("dataset-v1", SHA1), view("dataset-v2", SHA2))
    assert d["guidelines"] == {"from": SHA1, "to": SHA2, "changed": True}
    assert summary_lines(d)[-1] == f"guidelines changed: {SHA1} -> {SHA2}"
    assert f"guidelines changed: {SHA1} -> {SHA2}" in format_diff(d)
    same = diff_releases(view("dataset-v1", SHA1), view("dataset-v2", SHA1))
    assert same["guidelines"]["changed"] is False and summary_lines(same)[-1] == f"guidelines unchanged: {SHA1}"
    added = diff_releases(view("dataset-v1", NO_GUIDELINES), view("dataset-v2", SHA2))
    assert added["guidelines"]["changed"] is True  # a workspace that had none, then wrote guidelines.md
    old = diff_releases(view("dataset-v1", None), view("dataset-v2", SHA2))  # a release cut before they were recorded
    assert old["guidelines"]["changed"] is False
    assert summary_lines(old)[-1] == f"guidelines: dataset-v1 not recorded, dataset-v2 {SHA2}"


def test_the_release_note_names_the_guidelines_version():
    manifest = {"counts": {"images": 2, "negatives": 0, "labels": 3, "per_class": {"cat": 3},
                           "per_split": {"train": 2}}, "guidelines_sha256": SHA2}
    report = {"policy_id": "p1", "model_id": "m1", "gates": []}
    note = release_note("dataset-v2", manifest, report, [], [], None, None)
    assert f"guidelines: sha256 {SHA2}" in note.splitlines()
    note = release_note("dataset-v2", {**manifest, "guidelines_sha256": None}, report, [], [], None, None)
    assert "guidelines: sha256 none" in note.splitlines()


def test_guidelines_that_are_not_utf8_warn_and_keep_their_bytes(tmp_path):
    """A Latin-1 file: the version is the sha256 of its bytes, the bytes come back unchanged (what
    a review export copies), and a warning names the file and the first undecodable byte."""
    data = "# Guidelines\ncaf\u00e9: draw the cup\n".encode("latin-1")
    (tmp_path / GUIDELINES_FILE).write_bytes(data)
    with pytest.warns(GuidelinesWarning, match=rf"{tmp_path / GUIDELINES_FILE} is not UTF-8 text \(byte 16\)"):
        assert read_guidelines_bytes(tmp_path) == (data, hashlib.sha256(data).hexdigest())
    text, sha = read_guidelines(tmp_path, warn=False)
    assert sha == hashlib.sha256(data).hexdigest() and text == "# Guidelines\ncaf\ufffd: draw the cup\n"
