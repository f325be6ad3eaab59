"""``segmenter.compile`` (torch.compile of SAM's image encoder, labelloop.prelabel.backends.compiled):
the compiled encoder of a real segment-anything model (random weights, tiny architecture, CPU,
inductor with the machine's g++) against the same encoder uncompiled; the fallback to eager when
inductor has no C++ compiler; the setting in labelloop.yaml, its rejection for the transformers
segmenters and its absence from the model_id."""

from __future__ import annotations

import warnings

import pytest
import torch
from pydantic import ValidationError

from labelloop.prelabel.backends.compiled import CompiledOrEager, CompileFallbackWarning
from labelloop.prelabel.backends.foundation import FoundationPreLabeler
from labelloop.prelabel.backends.loading import sha256_path
from labelloop.prelabel.backends.sam import SamSegmenter, build_sam
from labelloop.workspace.config import ConfigError, ProjectConfig, load_config
from labelloop.workspace.model_specs import SegmenterSpec
from support.prelabel_checks import random_rel_pos
from support.random_weights import TEST_SAM_ARCH


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(random_rel_pos(build_sam(TEST_SAM_ARCH)).state_dict(), path)
    return path, sha256_path(path)


@pytest.fixture
def fresh_inductor(tmp_path, monkeypatch):
    """No compiled graph from an earlier test in memory or on disk: dynamo's caches reset and
    inductor's cache directory (compiled C++ included) empty."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch.compiler.reset()
    yield
    torch.compiler.reset()


def segmenter(checkpoint, compile: bool) -> SamSegmenter:
    path, sha = checkpoint
    return SamSegmenter(SegmenterSpec(path=str(path), sha256=sha, arch=TEST_SAM_ARCH, compile=compile),
                        path, torch.device("cpu"), None)


def pixels(seed: int, batch: int = 1) -> dict[str, torch.Tensor]:
    """A collated batch as SamCollate makes it: random uint8 image 256 x 192 padded to 256 x 256."""
    g = torch.Generator().manual_seed(seed)
    px = torch.zeros((batch, 3, 256, 256), dtype=torch.uint8)
    px[:, :, :, :192] = torch.randint(0, 256, (batch, 3, 256, 192), generator=g, dtype=torch.uint8)
    return {"pixels": px, "input_sizes": torch.tensor([[256, 192]] * batch)}


def test_compiled_encoder_equals_uncompiled_float32(tiny_checkpoint, fresh_inductor):
    compiled, plain = segmenter(tiny_checkpoint, True), segmenter(tiny_checkpoint, False)
    assert isinstance(compiled.encoder, CompiledOrEager) and plain.encoder is plain.model.image_encoder
    inputs = pixels(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)  # a silent eager fallback fails the test
        got = compiled.encode(inputs)
    assert compiled.encoder.error is None
    want = plain.encode(inputs)
    assert got.shape == want.shape == (1, 32, 16, 16)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert want.abs().max() > 1  # not a comparison of near-zero tensors


def test_no_cxx_compiler_falls_back_to_eager_with_a_warning(tiny_checkpoint, fresh_inductor):
    """Inductor's C++ compiler (``torch._inductor.config.cpp.cxx``, what ``$CXX`` sets at import)
    pointed at a file that does not exist: the first encode warns naming the failure and returns
    the eager result; later calls run eagerly without warning again."""
    compiled, plain = segmenter(tiny_checkpoint, True), segmenter(tiny_checkpoint, False)
    inputs = pixels(2)
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/bin/g++",)}):
        with pytest.warns(CompileFallbackWarning, match="torch.compile of the SAM image encoder failed, running it "
                                                        "eagerly") as record:
            got = compiled.encode(inputs)
        assert len(record) == 1
        assert compiled.encoder.error and "g++" in compiled.encoder.error, compiled.encoder.error
        torch.testing.assert_close(got, plain.encode(inputs), rtol=0, atol=0)  # the eager module itself
        with warnings.catch_warnings():
            warnings.simplefilter("error", CompileFallbackWarning)
            compiled.encode(pixels(3, batch=2))


def cfg(**seg) -> ProjectConfig:
    sha = "0" * 64
    return ProjectConfig.model_validate({
        "categories": [{"name": "person", "detector": "grounding-dino", "prompt": "a person", "masks": True}],
        "prelabeler": {"backend": "foundation", "detector": {"path": "gd", "sha256": sha},
                       "segmenter": {"path": "sam.pth", "sha256": sha, **seg}}})


def test_compile_setting_round_trips_and_is_not_in_model_id(tmp_path):
    assert SegmenterSpec(path="sam.pth", sha256="0" * 64).compile is False
    on = cfg(compile=True)
    assert on.prelabeler.segmenter.compile is True
    again = ProjectConfig.model_validate(on.model_dump())
    assert again.prelabeler.segmenter.compile is True and again == on
    assert "compile" not in on.prelabeler.segmenter.settings()
    ids = {FoundationPreLabeler(cfg(**kw)).model_id
           for kw in ({}, {"compile": True}, {"compile": False}, {"compile": True, "attention": "eager"})}
    assert ids == {"grounding-dino+sam@aed24bc15b9e-09e65d4c"}  # the id before the setting existed

    yaml_file = tmp_path / "labelloop.yaml"
    yaml_file.write_text(
        "categories:\n  - {name: person, detector: grounding-dino, prompt: a person, masks: true}\n"
        "prelabeler:\n  backend: foundation\n  detector: {path: gd, sha256: '" + "0" * 64 + "'}\n"
        "  segmenter: {path: sam.pth, sha256: '" + "0" * 64 + "', compile: true}\n", encoding="utf-8")
    assert load_config(yaml_file).prelabeler.segmenter.compile is True
    yaml_file.write_text(yaml_file.read_text().replace("compile: true", "compile: maybe"))
    with pytest.raises(ConfigError, match="prelabeler.segmenter.compile"):
        load_config(yaml_file)


@pytest.mark.parametrize("kind", ["sam-hq", "sam2"])
def test_compile_rejected_for_transformers_segmenters(kind):
    with pytest.raises(ValidationError, match=f"segmenter kind '{kind}' runs transformers' own model, uncompiled: "
                                              "remove compile"):
        cfg(kind=kind, compile=True)
    with pytest.raises(ValidationError, match="remove compile"):
        cfg(kind=kind, compile=False)  # set at all: it would silently do nothing
    assert cfg(kind=kind).prelabeler.segmenter.compile is False
