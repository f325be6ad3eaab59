"""The catalog (labelloop.models.catalog) and the pull helpers that need no hub
(labelloop.models.pull): every snippet is a valid labelloop.yaml spec; duplicate weights are
skipped; the git blob id is git's."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from labelloop.models import catalog
from labelloop.models.pull import files_to_fetch, git_blob_sha1, yaml_snippet
from labelloop.workspace.config import Sam3Spec
from labelloop.workspace.model_specs import DetectorSpec, SegmenterSpec

SHA = "d" * 64


def test_catalog_names_the_required_models_with_a_role_and_a_licence():
    want = {"grounding-dino-tiny": "IDEA-Research/grounding-dino-tiny", "owlv2-base": "google/owlv2-base-patch16-ensemble",
            "sam-vit-base": "facebook/sam-vit-base", "sam-vit-huge": "facebook/sam-vit-huge",
            "sam2.1-hiera-tiny": "facebook/sam2.1-hiera-tiny", "sam3": "facebook/sam3",
            "florence-2-base": "florence-community/Florence-2-base",
            "florence-2-large": "florence-community/Florence-2-large"}
    assert {n: e.repo_id for n, e in catalog.CATALOG.items() if n in want} == want
    for e in catalog.CATALOG.values():
        assert e.role in catalog.ROLES and e.licence and e.size_bytes > 0 and e.revision
    assert catalog.CATALOG["sam3"].gated and "hf auth login" in catalog.CATALOG["sam3"].note


@pytest.mark.parametrize("name", sorted(catalog.CATALOG))
def test_every_snippet_is_a_valid_spec(name):
    e = catalog.CATALOG[name]
    text = yaml_snippet(e.spec_kind, e.role, f"models/{name}", SHA)
    if e.spec_kind is None:
        assert text is None
        return
    body = yaml.safe_load(text)["prelabeler"]
    if e.role == "sam3":
        spec3 = Sam3Spec(**body["sam3"])
        assert body["backend"] == "sam3" and (spec3.path, spec3.sha256) == (f"models/{name}", SHA)
        return
    assert body["backend"] == "foundation"
    spec = (DetectorSpec if e.role == "detector" else SegmenterSpec)(**body[e.role])
    assert (spec.kind, spec.path, spec.sha256) == (e.spec_kind, f"models/{name}", SHA)


def test_lookup_of_repo_ids_and_unknown_names():
    adhoc = catalog.lookup("syscv-community/sam-hq-vit-base")
    assert (adhoc.name, adhoc.repo_id, adhoc.spec_kind) == ("sam-hq-vit-base", "syscv-community/sam-hq-vit-base", None)
    with pytest.raises(catalog.UnknownModelError, match="no model 'dino' in the catalog .*grounding-dino-tiny"):
        catalog.lookup("dino")


def test_duplicate_weights_are_left_out_only_when_safetensors_exist():
    names = [".gitattributes", "config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "onnx/model.onnx"]
    assert files_to_fetch(names) == ["config.json", "model.safetensors"]
    assert files_to_fetch(["config.json", "pytorch_model.bin"]) == ["config.json", "pytorch_model.bin"]


def test_git_blob_sha1_is_git_hash_object(tmp_path):
    f = tmp_path / "config.json"
    f.write_bytes(b'{"model_type": "sam2_video"}\n')
    git = subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True, check=True).stdout.strip()
    assert git_blob_sha1(f) == git
