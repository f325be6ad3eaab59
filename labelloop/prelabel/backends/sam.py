"""Segment Anything (Kirillov et al., 2023, arXiv:2304.02643) through Meta's ``segment-anything``
package: box prompts -> masks, image encoder batched over images, all boxes of an image in one
prompt-encoder + mask-decoder call.

Checkpoints: Meta's official ``.pth`` files (``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``,
``sam_vit_h_4b8939.pth``), read with ``torch.load(weights_only=True)`` after their sha256 is
checked, into the model ``segment_anything.sam_model_registry[arch]()`` builds (or, for an
architecture given by its numbers, the same construction as ``build_sam._build_sam`` with the
input side and prompt width as parameters).

Pre- and post-processing are SAM's own (``SamPredictor.set_torch_image`` / ``predict_torch``):
``ResizeLongestSide(img_size)`` in the DataLoader worker (uint8), then on the device
``(x - pixel_mean) / pixel_std`` and zero padding to ``img_size`` square; boxes (xyxy pixels of
the EXIF-corrected image) go through ``ResizeLongestSide.apply_boxes_torch``; one mask per box
(``multimask_output=False``); ``Sam.postprocess_masks`` upsamples the 256x256 low-resolution
logits back to the original (H, W), and pixels with logit > ``mask_threshold`` are foreground.

Attention in the image encoder: ``spec.attention`` (default ``sdpa``: fused
``scaled_dot_product_attention`` with the relative-position bias as its mask, set on this model
instance only by :func:`labelloop.prelabel.backends.sam_attention.set_attention`; ``eager``:
segment-anything's own forward). ``spec.compile`` (default false): the encoder runs through
``torch.compile`` (:class:`labelloop.prelabel.backends.compiled.CompiledOrEager`, eager with a warning if
compiling fails).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.utils.transforms import ResizeLongestSide

from labelloop.prelabel.backends.compiled import CompiledOrEager
from labelloop.prelabel.backends.loading import CheckpointError, load_state_dict
from labelloop.prelabel.backends.runtime import autocast
from labelloop.prelabel.backends.sam_attention import set_attention
from labelloop.workspace.model_specs import SamArch, SegmenterSpec

VIT_PATCH_SIZE = 16


def build_sam(arch: str | SamArch) -> Sam:
    """An un-initialised SAM of architecture ``arch`` (``vit_b`` / ``vit_l`` / ``vit_h`` or a
    :class:`~labelloop.workspace.model_specs.SamArch`), in eval mode, on the CPU, float32."""
    if isinstance(arch, str):
        return sam_model_registry[arch]().eval()
    emb = arch.image_size // VIT_PATCH_SIZE
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=arch.encoder_depth, embed_dim=arch.encoder_embed_dim, img_size=arch.image_size, mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=arch.encoder_num_heads,
            patch_size=VIT_PATCH_SIZE, qkv_bias=True, use_rel_pos=True,
            global_attn_indexes=arch.encoder_global_attn_indexes, window_size=14, out_chans=arch.prompt_embed_dim),
        prompt_encoder=PromptEncoder(embed_dim=arch.prompt_embed_dim, image_embedding_size=(emb, emb),
                                     input_image_size=(arch.image_size, arch.image_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=arch.prompt_embed_dim, mlp_dim=2048, num_heads=8),
            transformer_dim=arch.prompt_embed_dim, iou_head_depth=3, iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


class SamPrepare:
    """Worker side: RGB PIL image -> uint8 tensor (3, h, w), longest side = ``img_size``."""

    def __init__(self, img_size: int):
        self.transform = ResizeLongestSide(img_size)

    def __call__(self, rgb) -> torch.Tensor:
        arr = self.transform.apply_image(np.asarray(rgb.convert("RGB")))
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


class SamCollate:
    """uint8 (3, h, w) tensors -> ``pixels`` (B, 3, S, S) uint8 zero-padded at bottom/right and
    ``input_sizes`` (B, 2) int64 = each (h, w) before padding (S = ``img_size``)."""

    def __init__(self, img_size: int):
        self.img_size = img_size

    def __call__(self, tensors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        s = self.img_size
        pixels = torch.zeros((len(tensors), 3, s, s), dtype=torch.uint8)
        for i, t in enumerate(tensors):
            pixels[i, :, : t.shape[1], : t.shape[2]] = t
        sizes = torch.tensor([[t.shape[1], t.shape[2]] for t in tensors], dtype=torch.int64)
        return {"pixels": pixels, "input_sizes": sizes}


class SamSegmenter:
    """Box-prompted SAM on ``device`` under autocast ``amp`` (None = float32), image-encoder
    attention ``spec.attention`` (``sdpa`` | ``eager``), compiled when ``spec.compile``
    (``encoder``: the callable :meth:`encode` uses, the module or its compiled wrapper).

    Raises:
        CheckpointError: the ``.pth`` is missing, hashes differently, is not a weights-only state
            dict, or does not fit the configured ``arch`` (names the missing / unexpected keys).
    """

    kind = "sam"

    def __init__(self, spec: SegmenterSpec, path: Path, device: torch.device, amp: torch.dtype | None):
        self.spec, self.device, self.amp = spec, device, amp
        what = f"segmenter sam ({spec.arch if isinstance(spec.arch, str) else 'custom arch'})"
        state = load_state_dict(path, spec.sha256, what)
        self.model = build_sam(spec.arch)
        try:
            self.model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{what}: {path} (sha256 {spec.sha256}) does not match this architecture: "
                                  f"{str(exc).splitlines()[0]} {str(exc).splitlines()[1:3]}") from None
        set_attention(self.model.image_encoder, spec.attention)
        self.model.to(device)
        self.encoder = (CompiledOrEager(self.model.image_encoder, "SAM image encoder") if spec.compile
                        else self.model.image_encoder)
        self.img_size = self.model.image_encoder.img_size
        self.transform = ResizeLongestSide(self.img_size)

    def preparer(self) -> SamPrepare:
        return SamPrepare(self.img_size)

    def collater(self) -> SamCollate:
        return SamCollate(self.img_size)

    def encode(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Image embeddings (B, C, S/16, S/16) of a collated batch on the device."""
        x = inputs["pixels"].float()
        x = (x - self.model.pixel_mean) / self.model.pixel_std
        h = torch.arange(self.img_size, device=x.device)
        valid = (h[None, :, None] < inputs["input_sizes"][:, 0, None, None]) & \
                (h[None, None, :] < inputs["input_sizes"][:, 1, None, None])  # (B, S, S)
        x = x * valid[:, None].to(x.dtype)  # SAM pads after normalising: padding is 0
        with torch.inference_mode(), autocast(self.device, self.amp):
            return self.encoder(x)

    def decode_logits(self, embedding: torch.Tensor, boxes_xyxy: torch.Tensor, original_size: tuple[int, int]):
        """All ``boxes_xyxy`` (N, 4) of one image in one prompt-encoder + mask-decoder call.
        Returns the low-resolution mask logits (N, 1, 256, 256) (S/4 square for a custom S)."""
        boxes = self.transform.apply_boxes_torch(boxes_xyxy.float(), original_size)
        with torch.inference_mode(), autocast(self.device, self.amp):
            sparse, dense = self.model.prompt_encoder(points=None, boxes=boxes, masks=None)
            low, _iou = self.model.mask_decoder(
                image_embeddings=embedding[None], image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
        return low

    def masks(self, embedding: torch.Tensor, boxes_xyxy: torch.Tensor, input_size: tuple[int, int],
              original_size: tuple[int, int]) -> torch.Tensor:
        """Boolean masks (N, H, W) on the device, (H, W) = ``original_size`` of the image.

        Args:
            embedding: (C, e, e) this image's embedding from :meth:`encode`.
            boxes_xyxy: (N, 4) pixels of the EXIF-corrected image.
            input_size: (h, w) of the resized image before padding.
        """
        return box_masks(self, embedding, boxes_xyxy, input_size, original_size,
                         lambda low, i, o: self.model.postprocess_masks(low, i, o) > self.spec.mask_threshold)


def box_masks(segmenter, embedding, boxes_xyxy: torch.Tensor, input_size: tuple[int, int],
              original_size: tuple[int, int], upsample) -> torch.Tensor:
    """Boolean masks (N, H, W) on the device for the (N, 4) ``boxes_xyxy`` of one image: one
    ``segmenter.decode_logits`` call, then ``upsample(low_res_logits float32, input_size,
    original_size)`` -> (N, 1, H, W) bool, the segmenter's own resize-and-threshold. No box gives
    a (0, H, W) tensor without calling the model. Shared by SAM and the transformers segmenters."""
    if boxes_xyxy.shape[0] == 0:
        return torch.zeros((0, *original_size), dtype=torch.bool, device=boxes_xyxy.device)
    low = segmenter.decode_logits(embedding, boxes_xyxy, original_size)
    with torch.inference_mode():
        return upsample(low.float(), tuple(input_size), tuple(original_size))[:, 0]
