"""The original SAM through transformers (``SamModel``, segmenter kind ``sam-hf``: what the hub's
facebook/sam-vit-base / sam-vit-huge hold) behind the foundation pre-labeler, on the CPU: a tiny
random-weight model saved with ``save_pretrained``, loaded through the sha256-checked path; masks
equal the library's own processor -> model -> post-processing on real photos."""

from __future__ import annotations

import torch

from labelloop.geometry.masks import decode_rle, encode_rle
from labelloop.images.files import load_rgb
from labelloop.prelabel.backends.foundation import FoundationPreLabeler
from labelloop.prelabel.backends.pipeline import batch_of_images, image_row
from labelloop.workspace.config import ProjectConfig
from support.helpers import skimage_data
from support.prelabel_checks import MASKS, PROMPTS
from support.random_weights import write_grounding_dino, write_sam_transformers


def test_sam_hf_masks_equal_the_transformers_pipeline(tmp_path):
    gd_sha = write_grounding_dino(tmp_path / "gd", PROMPTS.values())
    sam_sha = write_sam_transformers(tmp_path / "sam")
    cats = [{"name": n, "detector": "grounding-dino", "prompt": PROMPTS[n], "masks": MASKS[n]} for n in PROMPTS]
    m = FoundationPreLabeler(ProjectConfig.model_validate({"categories": cats, "prelabeler": {
        "backend": "foundation", "device": "cpu", "num_workers": 0,
        "detector": {"path": "gd", "sha256": gd_sha, "shortest_edge": 96, "longest_edge": 160},
        "segmenter": {"kind": "sam-hf", "path": "sam", "sha256": sam_sha}}}), tmp_path)
    _, seg = m.load()
    assert type(seg.model).__name__ == "SamModel" and m.backend == "grounding-dino+sam-hf"
    rgbs = [load_rgb(skimage_data() / n) for n in ("coffee.png", "chelsea.png")]  # 600 x 400, 451 x 300
    batch = batch_of_images(rgbs, m.prepare())
    assert batch.seg["input_sizes"].tolist() == [[171, 256], [170, 256]]
    emb = seg.encode(batch.seg)
    assert [tuple(t.shape) for t in emb] == [(2, 32, 16, 16)]
    b = torch.tensor([[10.0, 20.0, 300.0, 380.0], [0.0, 0.0, 600.0, 400.0]])
    ours = seg.masks(image_row(emb, 0), b, (171, 256), (400, 600))
    inputs = seg.processor(images=[rgbs[0]], input_boxes=[b.tolist()], return_tensors="pt")
    with torch.inference_mode():
        out = seg.model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"], multimask_output=False)
    ref = seg.processor.post_process_masks(out.pred_masks, inputs["original_sizes"],
                                           inputs["reshaped_input_sizes"])[0][:, 0]
    assert ours.shape == (2, 400, 600) and torch.equal(ours, ref)
    rle = encode_rle(ours[1].numpy())
    assert (decode_rle(rle) == ours[1].numpy()).all()
