"""Florence-2 (Xiao et al., 2023, "Florence-2: Advancing a Unified Representation for a Variety of
Vision Tasks", arXiv:2311.06242) as the text-prompted detector of the foundation pre-labeler
(``detector: {kind: florence-2, ...}``), through ``transformers``
(``Florence2ForConditionalGeneration`` + ``Florence2Processor``,
https://huggingface.co/docs/transformers/model_doc/florence2) from a local ``save_pretrained``
directory (e.g. florence-community/Florence-2-base copied onto the machine). The same detector
interface as :mod:`labelloop.prelabel.backends.grounding_dino`.

Prompts: the ``<OPEN_VOCABULARY_DETECTION>`` task, one generation per category prompt: the
processor's own prompt ``"Locate {prompt} in the image."``, tokenized once at load as
``Florence2Processor`` does (``image_seq_length`` image tokens, ``<s>``, the prompt, ``</s>``).
Per batch of B images and each category: one greedy ``generate`` call (``num_beams=1``, no
sampling) on the B images with that category's prompt, at most
``max_detections * (4 + prompt tokens) + 2`` new tokens (each box is its phrase and 4 location
tokens), stopping at ``</s>``. The vision encoder runs once per category (``generate`` encodes
the image with the prompt).

Images: the processor's resize to its square ``size`` (768 for the released models, aspect ratio
not kept), rescaled and normalized (``CLIPImageProcessor``), in the DataLoader workers.

Boxes: the generated text is phrases each followed by location tokens ``<loc_0>`` ..
``<loc_999>``; every run of 4 consecutive location tokens is one box, bins
``(x0, y0, x1, y1)`` of a 1000 x 1000 grid over the resized image, which maps linearly onto the
original: pixel = ``(bin + 0.5) * W / 1000`` (x) and ``* H / 1000`` (y), the bin centre, as
``Florence2PostProcessor.dequantize`` (which then truncates to int; we keep the float). xyxy
pixels of the EXIF-corrected image; then clipped, slivers dropped, per-category NMS and the best
``max_detections`` (:func:`~labelloop.prelabel.backends.detection.finish_boxes`).

Scores (Florence-2 returns none; this rule is ours): a box's score is the **mean probability of
its 4 generated location tokens**, each the softmax over the vocabulary of the model's raw
logits at that step (``generate(output_logits=True)``, before any logits processor) taken at the
generated token: :func:`location_scores`. It is in [0, 1]; a box is kept when its score is
>= ``box_threshold`` (``text_threshold`` does not apply). The same rule scores any given
sequence teacher-forced (:meth:`Florence2Detector.score_sequences`), which is how the tests check
that the box the model generates scores higher than the same sequence with its location tokens
altered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from labelloop.prelabel.backends.detection import Boxes, finish_boxes, load_pretrained
from labelloop.prelabel.backends.loading import CheckpointError
from labelloop.prelabel.backends.runtime import autocast
from labelloop.workspace.model_specs import DetectorSpec

__all__ = ["LOC_BINS", "TASK", "Florence2Detector", "Florence2Prepare", "GeneratedBoxes", "florence2_collate",
           "location_scores"]

TASK = "<OPEN_VOCABULARY_DETECTION>"
#: Location tokens ``<loc_0>`` .. ``<loc_999>``: the bins of each image axis.
LOC_BINS = 1000


@dataclass
class GeneratedBoxes:
    """One generated sequence's boxes: ``bins`` (N, 4) int64 location bins (x0, y0, x1, y1 of the
    1000-grid), ``scores`` (N,) float32 in [0, 1] (:func:`location_scores`)."""

    bins: torch.Tensor
    scores: torch.Tensor


def location_scores(tokens: torch.Tensor, logits: torch.Tensor, loc_of: torch.Tensor) -> GeneratedBoxes:
    """Boxes and their scores of one generated sequence (module docstring).

    Args:
        tokens: (T,) int64 generated token ids (without the decoder start token).
        logits: (T, V) the raw logits that predicted each of ``tokens``.
        loc_of: (V,) int64: the bin of each token id that is a location token, -1 for the others.

    Returns:
        :class:`GeneratedBoxes`: every run of 4 consecutive location tokens (a longer run gives
        one box per 4 tokens, a trailing 1-3 are dropped); score = mean of the 4 tokens'
        ``softmax(logits)`` probabilities.
    """
    bins = loc_of[tokens]
    probs = logits.float().softmax(-1).gather(1, tokens[:, None])[:, 0]
    out_bins, out_scores = [], []
    run: list[int] = []
    for t in range(len(tokens) + 1):
        if t < len(tokens) and int(bins[t]) >= 0:
            run.append(t)
            if len(run) == 4:
                idx = torch.tensor(run, device=tokens.device)
                out_bins.append(bins[idx])
                out_scores.append(probs[idx].mean())
                run = []
        else:
            run = []
    if not out_bins:
        return GeneratedBoxes(torch.zeros((0, 4), dtype=torch.int64, device=tokens.device),
                              torch.zeros((0,), dtype=torch.float32, device=tokens.device))
    return GeneratedBoxes(torch.stack(out_bins), torch.stack(out_scores))


class Florence2Prepare:
    """Worker side: RGB PIL image -> ``pixel_values`` (3, S, S) float32, the processor's own resize
    and normalization (picklable: holds the image processor only)."""

    def __init__(self, image_processor):
        self.image_processor = image_processor

    def __call__(self, rgb) -> torch.Tensor:
        return self.image_processor(images=rgb, return_tensors="pt")["pixel_values"][0]


def florence2_collate(tensors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stack (3, S, S) tensors into ``{"pixel_values": (B, 3, S, S)}`` float32."""
    return {"pixel_values": torch.stack(list(tensors))}


class Florence2Detector:
    """Florence-2 open-vocabulary detector for ``prompts`` (one per category, in category order).

    Args:
        spec: the detector settings (``kind: florence-2``); ``path`` the resolved directory.
        prompts: text prompt per category.
        device: where the model runs; ``amp``: autocast dtype or None (float32).

    Raises:
        CheckpointError: the directory is missing, hashes differently, is not a Florence-2
            ``save_pretrained`` directory with its processor, or its tokenizer lacks the
            location tokens ``<loc_0>`` .. ``<loc_999>``.
        ValueError: a prompt is empty or repeats another.
    """

    kind = "florence-2"

    def __init__(self, spec: DetectorSpec, path: Path, prompts: Sequence[str], device: torch.device,
                 amp: torch.dtype | None):
        from transformers import (  # optional heavy dependency (the gpu extra)
            Florence2ForConditionalGeneration,
            Florence2Processor,
        )

        self.spec, self.device, self.amp = spec, device, amp
        self.model, self.processor = load_pretrained(self.kind, "a Florence-2", spec, path,
                                                     Florence2ForConditionalGeneration, Florence2Processor)
        self.model.to(device).eval()
        tok = self.processor.tokenizer
        names = [f"<loc_{i}>" for i in range(LOC_BINS)]
        ids = tok.convert_tokens_to_ids(names)
        if any(i is None or i == tok.unk_token_id for i in ids):
            raise CheckpointError(f"detector florence-2: {path} (sha256 {spec.sha256}): its tokenizer lacks the "
                                  f"location tokens <loc_0> .. <loc_{LOC_BINS - 1}>")
        vocab = self.model.config.text_config.vocab_size
        self.loc_of = torch.full((max(vocab, len(tok)),), -1, dtype=torch.int64)
        self.loc_of[torch.tensor(ids)] = torch.arange(LOC_BINS)
        self.loc_of = self.loc_of.to(device)
        self.prompts = self.encode_prompts(prompts)

    def encode_prompts(self, prompts: Sequence[str]) -> list[torch.Tensor]:
        """Per category the encoder ``input_ids`` (1, L) int64 on the device: ``image_seq_length``
        image tokens, ``<s>``, ``"Locate {prompt} in the image."`` tokenized, ``</s>`` (what
        ``Florence2Processor(text=TASK + prompt, images=...)`` gives)."""
        clean = [p.strip() for p in prompts]
        if any(not p for p in clean) or len(set(clean)) != len(clean):
            raise ValueError(f"Florence-2 prompts must be non-empty and differ per category: {clean}")
        proc, tok = self.processor, self.processor.tokenizer
        out = []
        for p in clean:
            text = proc._construct_prompts([TASK + p])[0]  # the processor's own task prompt
            ids = tok(tok.bos_token + text + tok.eos_token, add_special_tokens=False)["input_ids"]
            image = [proc.image_token_id] * proc.num_image_tokens
            out.append(torch.tensor([image + ids], dtype=torch.int64, device=self.device))
        return out

    def preparer(self) -> Florence2Prepare:
        return Florence2Prepare(self.processor.image_processor)

    collate = staticmethod(florence2_collate)

    def max_new_tokens(self, category: int) -> int:
        """Generation budget of one category: ``max_detections * (4 + prompt tokens) + 2``."""
        n_prompt = self.prompts[category].shape[1] - self.processor.num_image_tokens
        return self.spec.max_detections * (4 + n_prompt) + 2

    def generate(self, pixel_values: torch.Tensor, category: int):
        """Greedy ``generate`` of category ``category``'s prompt on (B, 3, S, S) device pixels;
        returns ``(tokens (B, T) without the decoder start token, logits (B, T, V) raw)``."""
        b = pixel_values.shape[0]
        ids = self.prompts[category].expand(b, -1)
        with torch.inference_mode(), autocast(self.device, self.amp):
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixel_values,
                                      max_new_tokens=self.max_new_tokens(category), num_beams=1, do_sample=False,
                                      output_logits=True, return_dict_in_generate=True)
        logits = torch.stack(out.logits, dim=1)  # (B, T, V)
        tokens = out.sequences[:, -logits.shape[1]:]
        return tokens, logits

    def score_sequences(self, pixel_values: torch.Tensor, category: int, tokens: torch.Tensor) -> list[GeneratedBoxes]:
        """Teacher-forced: the boxes and scores of given token sequences (B, T) (no start token)
        for category ``category``'s prompt, by the same rule as generation (module docstring)."""
        b = pixel_values.shape[0]
        ids = self.prompts[category].expand(b, -1)
        start = torch.full((b, 1), self.model.generation_config.decoder_start_token_id, dtype=torch.int64,
                           device=tokens.device)
        with torch.inference_mode(), autocast(self.device, self.amp):
            out = self.model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixel_values,
                             decoder_input_ids=torch.cat([start, tokens[:, :-1]], 1))
        return [location_scores(tokens[i], out.logits[i], self.loc_of) for i in range(b)]

    def detect(self, inputs: dict[str, torch.Tensor], sizes: Sequence[tuple[int, int]]) -> list[Boxes]:
        """Boxes per image; ``sizes`` = (H, W) of each original image (module docstring)."""
        pv = inputs["pixel_values"]
        per_image: list[list[tuple[torch.Tensor, torch.Tensor, int]]] = [[] for _ in sizes]
        pad = self.processor.tokenizer.pad_token_id
        for c in range(len(self.prompts)):
            tokens, logits = self.generate(pv, c)
            for i in range(len(sizes)):
                keep = tokens[i] != pad  # a sequence that ended before the longest is padded
                found = location_scores(tokens[i][keep], logits[i][keep], self.loc_of)
                per_image[i].append((found.bins, found.scores, c))
        out = []
        for i, (h, w) in enumerate(sizes):
            bins = torch.cat([b for b, _, _ in per_image[i]]).float()
            scores = torch.cat([s for _, s, _ in per_image[i]])
            labels = torch.cat([torch.full((len(s),), c, dtype=torch.int64, device=s.device)
                                for _, s, c in per_image[i]])
            scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=bins.device) / LOC_BINS
            xyxy = (bins + 0.5) * scale
            k = scores >= self.spec.box_threshold
            out.append(finish_boxes(xyxy[k], scores[k], labels[k], (h, w), self.spec))
        return out
