"""SAM-HQ, SAM 2, SAM 3's tracker and the transformers port of SAM as box-prompted segmenters
through ``transformers``, from local
``save_pretrained`` directories (model + processor), behind the same interface as
:class:`labelloop.prelabel.backends.sam.SamSegmenter` (``preparer`` / ``collater`` / ``encode`` / ``masks``).

- ``sam-hq`` (Ke et al., 2023, "Segment Anything in High Quality", arXiv:2306.01567):
  ``SamHQModel`` + ``SamHQProcessor`` (e.g. syscv-community/sam-hq-vit-h copied onto the machine).
  The image is resized so its longer side is the model's input side S (1024), bilinear, by the
  processor's ``SamImageProcessor``; rescaled to [0, 1], normalized with the ImageNet mean / std,
  then zero-padded at the bottom / right to S x S. The per-image embedding is
  ``(image_embeddings (C, S/16, S/16), vit_features (S/16, S/16, D))``: the neck output and the
  output of the ViT's first global-attention block, the one input of the HQ feature fusion
  (``SamHQMaskDecoder`` reads ``intermediate_embeddings[0]`` only). One mask per box
  (``multimask_output=False``) = SAM's mask logits + the HQ token's (``hq_token_only=False``,
  SAM-HQ's default). Masks: ``SamImageProcessor.post_process_masks`` (upsample the (S/4)^2 logits
  to S x S, crop the padding, upsample to the original (H, W), logit > ``mask_threshold``).
- ``sam2`` (Ravi et al., 2024, "SAM 2: Segment Anything in Images and Videos", arXiv:2408.00714),
  image mode: ``Sam2Model`` + ``Sam2Processor`` (e.g. facebook/sam2.1-hiera-large). The image is
  resized to S x S (aspect ratio not kept, as SAM 2 does), bilinear, by ``Sam2ImageProcessor``;
  rescaled and normalized, no padding. The per-image embedding is multi-level:
  ``Sam2Model.get_image_embeddings`` gives three feature maps (S/4, S/8 and S/16 square; the
  first two already projected by the decoder's ``conv_s0`` / ``conv_s1``, the last with the
  no-memory embedding added), all passed to the decoder. One mask per box
  (``multimask_output=False``; the decoder's dynamic stability selection applies as configured).
  Masks: ``Sam2ImageProcessor.post_process_masks`` (upsample the (S/4)^2 logits straight to the
  original (H, W), logit > ``mask_threshold``).

``sam3-tracker`` (:class:`Sam3TrackerSegmenter`) runs the SAM 2 path with SAM 3's tracker;
``sam-hf`` (:class:`SamTransformersSegmenter`) the SAM-HQ path with the original SAM.

All: the DataLoader worker runs the processor's own resize with rescale / normalize switched off,
which gives uint8 (3, h, w) (a quarter of the float32 bytes to move); normalization, and SAM-HQ's
padding, run on the device, as in the processor (agrees with it to float32 rounding). Boxes are
xyxy pixels of the EXIF-corrected image, scaled to the resized input per axis
(``x * w_in / W``, ``y * h_in / H``: the processors' ``_normalize_coordinates``), all boxes of an
image in one prompt-encoder + mask-decoder call. Masks are (N, H, W) booleans of that image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from labelloop.prelabel.backends.detection import load_pretrained
from labelloop.prelabel.backends.loading import CheckpointError
from labelloop.prelabel.backends.runtime import autocast
from labelloop.prelabel.backends.sam import SamCollate, box_masks
from labelloop.workspace.model_specs import SegmenterSpec


class HfSamPrepare:
    """Worker side: RGB PIL image -> uint8 tensor (3, h, w) resized by the model's own image
    processor (``extra`` = further processor arguments, e.g. ``do_pad=False``)."""

    def __init__(self, image_processor, extra: dict[str, Any]):
        self.image_processor, self.extra = image_processor, extra

    def __call__(self, rgb) -> torch.Tensor:
        out = self.image_processor(images=rgb, do_rescale=False, do_normalize=False, return_tensors="pt", **self.extra)
        x = out["pixel_values"][0]
        if x.dtype != torch.uint8:  # the torchvision backend keeps uint8 through the resize
            x = x.round().clamp(0, 255).to(torch.uint8)
        return x


class HfSamSegmenter:
    """What SAM-HQ and SAM 2 share: loading, worker-side resize, on-device normalization, box
    scaling and the decoder call. Subclasses set ``kind``, ``name``, the model / processor
    classes, and ``input_side``, ``embed``, ``decoder_inputs`` and ``postprocess``.

    Args:
        spec: the segmenter settings (``kind`` ``sam-hq`` or ``sam2``).
        path: the resolved ``save_pretrained`` directory.
        device: where the model runs; ``amp``: autocast dtype or None (float32).

    Raises:
        CheckpointError: the directory is missing, hashes differently, is not this model's
            ``save_pretrained`` directory with its processor, or the processor's input size is
            not the model's.
    """

    kind = ""
    name = ""
    model_types: tuple[str, ...] = ()  # config.json model_type accepted besides the model class's own
    pad = False  # zero-pad the resized image to S x S after normalizing (SAM-HQ)

    def __init__(self, spec: SegmenterSpec, path: Path, device: torch.device, amp: torch.dtype | None):
        self.spec, self.device, self.amp = spec, device, amp
        model_cls, processor_cls = self.classes()
        self.model, self.processor = load_pretrained(spec.kind, self.name, spec, path, model_cls, processor_cls,
                                                     role="segmenter", model_types=self.model_types)
        self.model.to(device).eval()
        ip = self.processor.image_processor
        self.img_size = self.input_side(ip)
        want = self.model.config.prompt_encoder_config.image_size
        if self.img_size != want:
            raise CheckpointError(f"segmenter {spec.kind}: {path} (sha256 {spec.sha256}): the processor resizes to "
                                  f"{self.img_size} pixels but the model takes {want}")
        self.mean = torch.tensor(ip.image_mean, dtype=torch.float32, device=device)[:, None, None]
        self.std = torch.tensor(ip.image_std, dtype=torch.float32, device=device)[:, None, None]
        self.rescale = float(ip.rescale_factor)

    @staticmethod
    def classes():  # pragma: no cover - overridden
        raise NotImplementedError

    def input_side(self, image_processor) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def preparer(self) -> HfSamPrepare:
        return HfSamPrepare(self.processor.image_processor, {"do_pad": False} if self.pad else {})

    def collater(self) -> SamCollate:
        """Pads (SAM-HQ) or stacks (SAM 2: every image is S x S) the uint8 images; gives
        ``pixels`` (B, 3, S, S) uint8 and ``input_sizes`` (B, 2) = (h, w) before padding."""
        return SamCollate(self.img_size)

    def pixel_values(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 3, S, S) float32 model input: ``(x * rescale - mean) / std``, 0 in the padding."""
        x = (inputs["pixels"].float() * self.rescale - self.mean) / self.std
        if self.pad:
            r = torch.arange(self.img_size, device=x.device)
            valid = (r[None, :, None] < inputs["input_sizes"][:, 0, None, None]) & \
                    (r[None, None, :] < inputs["input_sizes"][:, 1, None, None])  # (B, S, S)
            x = x * valid[:, None].to(x.dtype)
        return x

    def encode(self, inputs: dict[str, torch.Tensor]):
        """Image embeddings of a collated batch on the device: a tuple / list of tensors with
        dim 0 = image (see the module docstring); row j of each is image j's embedding."""
        x = self.pixel_values(inputs)
        with torch.inference_mode(), autocast(self.device, self.amp):
            return self.embed(x)

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:  # pragma: no cover - overridden
        """(h, w) of the resized input (before padding) of an (H, W) image."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> Sequence[torch.Tensor]:  # pragma: no cover - overridden
        raise NotImplementedError

    def decoder_inputs(self, embedding: Sequence[torch.Tensor]) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def postprocess(self, low: torch.Tensor, input_size, original_size) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def scale_boxes(self, boxes_xyxy: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """xyxy pixels of the original (H, W) image -> pixels of the resized (h, w) input."""
        (h, w), (oh, ow) = self.input_size(original_size), original_size
        s = torch.tensor([w / ow, h / oh, w / ow, h / oh], dtype=torch.float32, device=boxes_xyxy.device)
        return boxes_xyxy.float() * s

    def decode_logits(self, embedding, boxes_xyxy: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """All ``boxes_xyxy`` (N, 4) of one image in one prompt-encoder + mask-decoder call (the
        same signature as :meth:`labelloop.prelabel.backends.sam.SamSegmenter.decode_logits`).
        Returns the low-resolution mask logits (N, 1, S/4, S/4)."""
        boxes = self.scale_boxes(boxes_xyxy, original_size)[None]  # (1, N, 4)
        with torch.inference_mode(), autocast(self.device, self.amp):
            out = self.model(input_boxes=boxes, multimask_output=False, **self.decoder_inputs(embedding))
        return out.pred_masks[0]

    def masks(self, embedding, boxes_xyxy: torch.Tensor, input_size: tuple[int, int],
              original_size: tuple[int, int]) -> torch.Tensor:
        """Boolean masks (N, H, W) on the device, (H, W) = ``original_size`` of the image.

        Args:
            embedding: this image's embedding (row j of :meth:`encode`'s output).
            boxes_xyxy: (N, 4) pixels of the EXIF-corrected image.
            input_size: (h, w) of the resized image before padding.
        """
        return box_masks(self, embedding, boxes_xyxy, input_size, original_size, self.postprocess)


class SamHQSegmenter(HfSamSegmenter):
    """SAM-HQ (module docstring). ``encode`` returns ``(image_embeddings (B, C, e, e),
    vit_features (B, e, e, D))``."""

    kind, name, pad = "sam-hq", "a SAM-HQ", True

    @staticmethod
    def classes():
        from transformers import SamHQModel, SamHQProcessor  # optional heavy dependency (the gpu extra)

        return SamHQModel, SamHQProcessor

    def input_side(self, image_processor) -> int:
        side = image_processor.size["longest_edge"]
        pad = image_processor.pad_size
        if (pad["height"], pad["width"]) != (side, side):
            raise CheckpointError(f"segmenter sam-hq: the processor pads to {pad}, not to its longest edge {side} square")
        return side

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """Longer side S, the other ``int(side * S / longer + 0.5)``, as
        ``SamImageProcessor._get_preprocess_shape`` (and the worker's resize)."""
        h, w = original_size
        scale = self.img_size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb, intermediate = self.model.get_image_embeddings(x)
        return emb, intermediate[0]

    def decoder_inputs(self, embedding: Sequence[torch.Tensor]) -> dict:
        emb, vit = embedding
        return {"image_embeddings": emb[None], "intermediate_embeddings": [vit[None]], "hq_token_only": False}

    def postprocess(self, low: torch.Tensor, input_size, original_size) -> torch.Tensor:
        s = self.img_size
        return self.processor.image_processor.post_process_masks(
            [low], [original_size], [input_size], mask_threshold=self.spec.mask_threshold, binarize=True,
            pad_size={"height": s, "width": s})[0]


class Sam2Segmenter(HfSamSegmenter):
    """SAM 2 in image mode (module docstring). ``encode`` returns a list of three feature maps
    (B, C_l, S/4, S/4), (B, C_l, S/8, S/8), (B, C, S/16, S/16)."""

    kind, name, pad = "sam2", "a SAM 2", False
    model_types: tuple[str, ...] = ("sam2_video",)  # the official SAM 2.1 directories hold the video model; image mode uses its image part

    @staticmethod
    def classes():
        from transformers import Sam2Model, Sam2Processor  # optional heavy dependency (the gpu extra)

        return Sam2Model, Sam2Processor

    def input_side(self, image_processor) -> int:
        size = image_processor.size
        if size["height"] != size["width"]:
            raise CheckpointError(f"segmenter sam2: the processor resizes to {size}, not a square")
        return size["height"]

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """Every image is resized to S x S."""
        return self.img_size, self.img_size

    def embed(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.model.get_image_embeddings(x))

    def decoder_inputs(self, embedding: Sequence[torch.Tensor]) -> dict:
        return {"image_embeddings": [e[None] for e in embedding]}

    def postprocess(self, low: torch.Tensor, input_size, original_size) -> torch.Tensor:
        return self.processor.image_processor.post_process_masks(
            [low], [original_size], mask_threshold=self.spec.mask_threshold, binarize=True)[0]


class Sam3TrackerSegmenter(Sam2Segmenter):
    """SAM 3's box-prompted segmenter (``sam3-tracker``): ``transformers.Sam3TrackerModel`` +
    ``Sam3TrackerProcessor`` (Carion et al., 2025, "SAM 3: Segment Anything with Concepts",
    arXiv:2511.16719; https://huggingface.co/docs/transformers/model_doc/sam3_tracker), e.g. the
    tracker part of ``facebook/sam3`` saved with ``save_pretrained``. It has the SAM 2 API, so the
    SAM 2 path applies unchanged: the image is resized to S x S (1008 for ``facebook/sam3``,
    aspect ratio not kept) by the processor's ``Sam2ImageProcessor``, rescaled and normalized, no
    padding; ``Sam3TrackerModel.get_image_embeddings`` gives three feature maps (the ViT's S/14
    patch grid upsampled 4x, 2x and 1x by the FPN: 288, 144 and 72 square for S = 1008; the
    first two projected by the
    decoder's ``conv_s0`` / ``conv_s1``, the last with the no-memory embedding added); one decoder
    call per image with all its boxes (``multimask_output=False``); masks by
    ``Sam2ImageProcessor.post_process_masks`` (logits upsampled to the original (H, W), logit >
    ``mask_threshold``). ``encode`` returns the three maps (B, C_l, h_l, w_l).

    Accepted ``config.json`` ``model_type``: ``sam3_tracker``, and the SAM 3 directories that hold
    the tracker among other parts (``sam3_tracker_video``, ``sam3_video``, ``sam3``); every
    weight of ``Sam3TrackerModel`` must be in the checkpoint either way
    (:func:`~labelloop.prelabel.backends.detection.load_pretrained`)."""

    kind, name, pad = "sam3-tracker", "a SAM 3 tracker", False
    model_types: tuple[str, ...] = ("sam3_tracker_video", "sam3_video", "sam3")

    @staticmethod
    def classes():
        from transformers import Sam3TrackerModel, Sam3TrackerProcessor  # optional heavy dependency (the gpu extra)

        return Sam3TrackerModel, Sam3TrackerProcessor


class SamTransformersSegmenter(SamHQSegmenter):
    """The original SAM (Kirillov et al., 2023, "Segment Anything", arXiv:2304.02643) through
    ``transformers`` (``sam-hf``): ``SamModel`` + ``SamProcessor`` saved with ``save_pretrained``,
    e.g. ``facebook/sam-vit-base`` / ``facebook/sam-vit-huge`` as the hub serves them (segmenter
    kind ``sam`` loads Meta's ``.pth`` files instead). Pre- and post-processing are SAM-HQ's
    (both use ``SamImageProcessor``: longer side S = 1024, zero-padded to S x S); the embedding is
    ``SamModel.get_image_embeddings`` alone, (B, 256, S/16, S/16); one mask per box
    (``multimask_output=False``)."""

    kind, name, pad = "sam-hf", "a SAM (transformers)", True

    @staticmethod
    def classes():
        from transformers import SamModel, SamProcessor  # optional heavy dependency (the gpu extra)

        return SamModel, SamProcessor

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        return (self.model.get_image_embeddings(x),)

    def decoder_inputs(self, embedding: Sequence[torch.Tensor]) -> dict:
        return {"image_embeddings": embedding[0][None]}


SEGMENTERS = {c.kind: c for c in (SamHQSegmenter, Sam2Segmenter, Sam3TrackerSegmenter, SamTransformersSegmenter)}
"""The transformers segmenters by ``SegmenterSpec.kind``."""
