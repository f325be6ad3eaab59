"""Checkpoints with random weights, written in the same formats as the real ones, for tests and
benchmarks on machines that cannot download weights.

- :func:`write_grounding_dino` saves ``GroundingDinoForObjectDetection`` + ``GroundingDinoProcessor``
  with ``save_pretrained`` (a BERT WordPiece vocabulary written here: special tokens, the prompt
  words and ``.``). ``size="tiny"`` is the grounding-dino-tiny architecture (Swin-T backbone,
  BERT-base text encoder, 6 + 6 layers, 900 queries: ``GroundingDinoConfig()`` defaults);
  ``size="test"`` a few-layer model that runs in well under a second on a CPU (2 decoder layers:
  the model needs at least two).
- :func:`write_sam` saves a SAM state dict as a ``.pth`` (``torch.save``), as Meta ships them.
- :func:`write_sam_hq` / :func:`write_sam2` save ``SamHQModel`` / ``Sam2Model`` with their
  processors (``save_pretrained``), a few-block test size or the library's default architecture.

The compute cost of a forward pass does not depend on the weights' values, so these serve the
throughput benchmark; their outputs are meaningless, so tests assert shapes, frames and formats.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch

from labelloop.prelabel.backends.loading import sha256_path
from labelloop.workspace.model_specs import SamArch

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VIT_SIZES = {"vit_b": (768, 12, 12, [2, 5, 8, 11]), "vit_l": (1024, 24, 16, [5, 11, 17, 23]),
             "vit_h": (1280, 32, 16, [7, 15, 23, 31])}
"""SAM's image encoders: width, depth, heads, global-attention blocks (segment-anything ``build_sam``)."""
TEST_SAM_ARCH = SamArch(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2,
                        encoder_global_attn_indexes=[1], image_size=256, prompt_embed_dim=32)


def write_vocab(path: Path, prompts: Sequence[str]) -> list[str]:
    """A BERT WordPiece ``vocab.txt``: special tokens, ``.``, then the lowercase words of ``prompts``."""
    words: list[str] = []
    for p in prompts:
        for w in p.lower().replace(".", " ").split():
            if w not in words:
                words.append(w)
    vocab = SPECIAL_TOKENS + ["."] + words
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return vocab


def write_grounding_dino(dest: str | os.PathLike, prompts: Sequence[str], size: str = "test", seed: int = 0) -> str:
    """Save a random-weight Grounding DINO and its processor to directory ``dest``.

    Args:
        dest: directory to create (must not hold another model).
        prompts: the category prompts the vocabulary must cover.
        size: ``"test"`` or ``"tiny"`` (module docstring).
        seed: ``torch.manual_seed`` for the weights.

    Returns:
        the directory's sha256 (:func:`labelloop.prelabel.backends.loading.sha256_path`).
    """
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoProcessor,
        SwinConfig,
    )
    from transformers.models.grounding_dino.image_processing_grounding_dino import GroundingDinoImageProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(dest / "vocab.txt", prompts)
    tokenizer = BertTokenizerFast(vocab=str(dest / "vocab.txt"), do_lower_case=True)
    if tokenizer.unk_token_id in tokenizer(" ".join(prompts).lower())["input_ids"]:
        raise ValueError(f"the written vocabulary does not cover the prompts {list(prompts)}")
    (dest / "vocab.txt").unlink()  # save_pretrained writes the tokenizer's own files
    torch.manual_seed(seed)
    if size == "tiny":
        config = GroundingDinoConfig()
        image_processor = GroundingDinoImageProcessor()
    elif size == "test":
        backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=7,
                              out_indices=[2, 3, 4])
        text = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=48, max_position_embeddings=64)
        config = GroundingDinoConfig(backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1,
                                     decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                                     encoder_attention_heads=2, decoder_attention_heads=2, num_queries=30,
                                     max_text_len=32, encoder_n_points=2, decoder_n_points=2)
        image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 160})
    else:
        raise ValueError(f"size must be 'test' or 'tiny', not {size!r}")
    model = GroundingDinoForObjectDetection(config).eval()
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(dest)
    model.save_pretrained(dest)
    return sha256_path(dest)


def write_clip_bpe(dest: Path, prompts: Sequence[str]) -> tuple[Path, Path]:
    """A CLIP byte-level BPE vocabulary (``vocab.json`` + ``merges.txt``) that spells the words of
    ``prompts``: every character (and its end-of-word ``</w>`` form), the left-to-right merges
    that build each word, and CLIP's ``<|startoftext|>`` / ``<|endoftext|>``."""
    import json

    words = sorted({w for p in prompts for w in p.lower().split()})
    chars = sorted({c for w in words for c in w})
    vocab = [*chars, *(c + "</w>" for c in chars)]
    merges: list[str] = []
    for w in words:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        acc = parts[0]
        for nxt in parts[1:]:
            if f"{acc} {nxt}" not in merges:
                merges.append(f"{acc} {nxt}")
            acc += nxt
            if acc not in vocab:
                vocab.append(acc)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (dest / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}), encoding="utf-8")
    (dest / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return dest / "vocab.json", dest / "merges.txt"


def write_owlv2(dest: str | os.PathLike, prompts: Sequence[str], seed: int = 0) -> str:
    """Save a small random-weight OWLv2 (``Owlv2ForObjectDetection``, CLIP text and vision
    towers of one layer, 96-pixel input, 16-pixel patches) and its processor to ``dest``.
    Returns the directory's sha256."""
    from transformers import CLIPTokenizer, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vocab, merges = write_clip_bpe(dest, prompts)
    tokenizer = CLIPTokenizer(vocab=str(vocab), merges=str(merges))
    vocab.unlink()
    merges.unlink()
    if tokenizer.unk_token_id in tokenizer(" ".join(prompts).lower())["input_ids"][1:-1]:  # CLIP: unk = eos
        raise ValueError(f"the written vocabulary does not cover the prompts {list(prompts)}")
    torch.manual_seed(seed)
    config = Owlv2Config(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16,
                     "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 96, "patch_size": 16},
        projection_dim=32)
    model = Owlv2ForObjectDetection(config).eval()
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size={"height": 96, "width": 96}),
                               tokenizer=tokenizer)
    processor.save_pretrained(dest)
    model.save_pretrained(dest)
    return sha256_path(dest)


def write_sam(dest: str | os.PathLike, arch: str | SamArch = TEST_SAM_ARCH, seed: int = 0) -> str:
    """Save a random-weight SAM state dict of ``arch`` to file ``dest`` (``torch.save``).
    Returns the file's sha256."""
    from labelloop.prelabel.backends.sam import build_sam

    torch.manual_seed(seed)
    model = build_sam(arch)
    Path(dest).parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), dest)
    return sha256_path(dest)


def write_sam_hq(dest: str | os.PathLike, size: str = "test", seed: int = 0) -> str:
    """Save a random-weight ``SamHQModel`` and its ``SamHQProcessor`` to directory ``dest``.

    ``size="test"``: a 2-block ViT of width 32 (one global-attention block), 256-pixel input,
    prompt / decoder width 32; ``vit_b`` / ``vit_l`` / ``vit_h``: SAM's image encoders (the numbers
    of :class:`~labelloop.workspace.model_specs.SamArch`) with SAM-HQ's decoder, 1024 pixels
    (``vit_b`` = ``SamHQConfig()``). Returns the directory's sha256."""
    from transformers import SamHQConfig, SamHQModel, SamHQProcessor
    from transformers.models.sam.image_processing_sam import SamImageProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    if size == "test":
        config = SamHQConfig(
            vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "global_attn_indexes": [1], "image_size": 256, "mlp_dim": 64, "output_channels": 32,
                           "num_pos_feats": 16, "window_size": 4},
            prompt_encoder_config={"hidden_size": 32, "image_size": 256, "image_embedding_size": 16, "patch_size": 16},
            mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "vit_dim": 32,
                                 "iou_head_hidden_dim": 32})
    elif size in VIT_SIZES:
        width, depth, heads, glob = VIT_SIZES[size]
        config = SamHQConfig(vision_config={"hidden_size": width, "num_hidden_layers": depth, "num_attention_heads": heads,
                                            "global_attn_indexes": glob, "mlp_dim": 4 * width},
                             mask_decoder_config={"vit_dim": width})
    else:
        raise ValueError(f"size must be 'test' or one of {sorted(VIT_SIZES)}, not {size!r}")
    s = config.vision_config.image_size
    processor = SamHQProcessor(image_processor=SamImageProcessor(
        size={"longest_edge": s}, pad_size={"height": s, "width": s},
        mask_size={"longest_edge": s // 4}, mask_pad_size={"height": s // 4, "width": s // 4}))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(dest)
    SamHQModel(config).eval().save_pretrained(dest)
    return sha256_path(dest)


def write_sam2(dest: str | os.PathLike, size: str = "test", seed: int = 0) -> str:
    """Save a random-weight ``Sam2Model`` and its ``Sam2Processor`` to directory ``dest``.

    ``size="test"``: a 5-block Hiera (widths 8..64, one global-attention block), 256-pixel input,
    FPN / decoder width 32; ``size="hiera_tiny"``: ``Sam2Config()`` defaults (SAM 2 Hiera-T, 1024
    pixels); ``"hiera_large"``: SAM 2.1 Hiera-L's numbers (``sam2.1_hiera_l.yaml``: width 144,
    blocks 2 / 6 / 36 / 4, global attention in 23, 33, 43, windows 8 / 4 / 16 / 8). Returns the
    directory's sha256."""
    from transformers import Sam2Config, Sam2Model, Sam2Processor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    if size == "test":
        backbone = {"model_type": "sam2_hiera_det_model", "hidden_size": 8, "embed_dim_per_stage": [8, 16, 32, 64],
                    "blocks_per_stage": [1, 1, 2, 1], "num_attention_heads_per_stage": [1, 1, 1, 1],
                    "global_attention_blocks": [3], "window_size_per_stage": [8, 4, 4, 2], "image_size": [256, 256],
                    "window_positional_embedding_background_size": [4, 4]}
        config = Sam2Config(
            vision_config={"backbone_config": backbone, "backbone_channel_list": [64, 32, 16, 8],
                           "backbone_feature_sizes": [[64, 64], [32, 32], [16, 16]], "fpn_hidden_size": 32},
            prompt_encoder_config={"hidden_size": 32, "image_size": 256, "patch_size": 16},
            mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32})
    elif size == "hiera_tiny":
        config = Sam2Config()
    elif size == "hiera_large":
        backbone = {"model_type": "sam2_hiera_det_model", "hidden_size": 144, "embed_dim_per_stage": [144, 288, 576, 1152],
                    "blocks_per_stage": [2, 6, 36, 4], "num_attention_heads_per_stage": [2, 4, 8, 16],
                    "global_attention_blocks": [23, 33, 43], "window_size_per_stage": [8, 4, 16, 8],
                    "window_positional_embedding_background_size": [7, 7]}
        config = Sam2Config(vision_config={"backbone_config": backbone, "backbone_channel_list": [1152, 576, 288, 144]})
    else:
        raise ValueError(f"size must be 'test', 'hiera_tiny' or 'hiera_large', not {size!r}")
    s = config.prompt_encoder_config.image_size
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    Sam2Processor(image_processor=Sam2ImageProcessor(size={"height": s, "width": s})).save_pretrained(dest)
    Sam2Model(config).eval().save_pretrained(dest)
    return sha256_path(dest)


def write_sam3(dest: Path, prompts, seed: int = 0, size: str = "test") -> str:
    """Save a random-weight SAM 3 and its processor (a CLIP BPE tokenizer spelling ``prompts``);
    returns the sha256. ``size="test"``: tiny (ViT of 2 layers, 32 wide, 112-pixel input; CLIP
    text of one layer; DETR encoder / decoder of one layer, 20 queries); ``"full"``: ``Sam3Config()``
    defaults, facebook/sam3's architecture (about 848M parameters, 1008-pixel input), for the
    benchmark."""
    from transformers import CLIPTokenizer, Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    dest.mkdir(parents=True, exist_ok=True)
    vocab, merges = write_clip_bpe(dest, prompts)
    tok = CLIPTokenizer(vocab=str(vocab), merges=str(merges))
    vocab.unlink()
    merges.unlink()
    torch.manual_seed(seed)
    small = {"num_attention_heads": 2, "intermediate_size": 32}
    if size == "full":
        full = Sam3Config()
        text = {**full.text_config.to_dict(), "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                "pad_token_id": tok.pad_token_id}
        config = Sam3Config(text_config=text)
        side = config.vision_config.backbone_config.image_size
        Sam3Model(config).eval().save_pretrained(dest)
        Sam3Processor(image_processor=Sam3ImageProcessor(size={"height": side, "width": side}),
                      tokenizer=tok).save_pretrained(dest)
        return sha256_path(dest)
    if size != "test":
        raise ValueError(f"size must be 'test' or 'full', not {size!r}")
    config = Sam3Config(
        vision_config={"backbone_config": {"model_type": "sam3_vit_model", "hidden_size": 32, "intermediate_size": 64,
                                           "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 112,
                                           "patch_size": 14, "window_size": 4, "global_attn_indexes": [1],
                                           "pretrain_image_size": 56},
                       "fpn_hidden_size": 16, "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]]},
        text_config={"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 37, "projection_dim": 32,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
        geometry_encoder_config={"hidden_size": 16, "num_layers": 1, "roi_size": 2, **small},
        detr_encoder_config={"hidden_size": 16, "num_layers": 1, **small},
        detr_decoder_config={"hidden_size": 16, "num_layers": 1, "num_queries": 20, **small},
        mask_decoder_config={"hidden_size": 16, "num_attention_heads": 2})
    Sam3Model(config).eval().save_pretrained(dest)
    Sam3Processor(image_processor=Sam3ImageProcessor(size={"height": 112, "width": 112}), tokenizer=tok).save_pretrained(dest)
    return sha256_path(dest)


def write_sam3_tracker(dest: str | os.PathLike, seed: int = 0) -> str:
    """Save a tiny random-weight ``Sam3TrackerModel`` (the SAM 3 ViT of :func:`write_sam3`: 2
    layers, 32 wide, patch 14, 112-pixel input; FPN 32 wide at 32, 16 and 8 square; prompt
    encoder / mask decoder 32 wide) and its ``Sam3TrackerProcessor`` (``Sam2ImageProcessor``,
    112 x 112) to directory ``dest``; returns its sha256."""
    from transformers import Sam3TrackerConfig, Sam3TrackerModel, Sam3TrackerProcessor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = Sam3TrackerConfig(
        vision_config={"backbone_config": {"model_type": "sam3_vit_model", "hidden_size": 32, "intermediate_size": 64,
                                           "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 112,
                                           "patch_size": 14, "window_size": 4, "global_attn_indexes": [1],
                                           "pretrain_image_size": 56},
                       "fpn_hidden_size": 32, "backbone_feature_sizes": [[32, 32], [16, 16], [8, 8]]},
        prompt_encoder_config={"hidden_size": 32, "image_size": 112, "patch_size": 14},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32})
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    Sam3TrackerProcessor(image_processor=Sam2ImageProcessor(size={"height": 112, "width": 112})).save_pretrained(dest)
    Sam3TrackerModel(config).eval().save_pretrained(dest)
    return sha256_path(dest)


def write_sam_transformers(dest: str | os.PathLike, seed: int = 0) -> str:
    """Save a tiny random-weight ``transformers.SamModel`` (ViT of 2 layers, 32 wide, 256-pixel
    input, one global-attention block; prompt encoder / mask decoder 32 wide) and its
    ``SamProcessor`` to directory ``dest``; returns its sha256."""
    from transformers import SamConfig, SamModel, SamProcessor
    from transformers.models.sam.image_processing_sam import SamImageProcessor
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    config = SamConfig(
        vision_config={"hidden_size": 32, "output_channels": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "mlp_dim": 64, "image_size": 256, "patch_size": 16, "window_size": 4,
                       "global_attn_indexes": [1], "num_pos_feats": 16},
        prompt_encoder_config={"hidden_size": 32, "image_size": 256, "patch_size": 16, "image_embedding_size": 16},
        mask_decoder_config={"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32})
    s = 256
    processor = SamProcessor(image_processor=SamImageProcessor(
        size={"longest_edge": s}, pad_size={"height": s, "width": s},
        mask_size={"longest_edge": s // 4}, mask_pad_size={"height": s // 4, "width": s // 4}))
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    processor.save_pretrained(dest)
    SamModel(config).eval().save_pretrained(dest)
    return sha256_path(dest)


def write_florence2(dest: str | os.PathLike, prompts: Sequence[str], seed: int = 0, loc_tokens: bool = True) -> str:
    """Save a tiny random-weight ``Florence2ForConditionalGeneration`` and its ``Florence2Processor``
    to directory ``dest``; returns its sha256.

    Tokenizer: a byte-level BPE ``BartTokenizer`` built here (nothing downloaded) whose vocabulary
    spells the words of the task prompt ``"Locate ... in the image."`` and of ``prompts``, with
    Florence-2's added tokens (``<loc_0>`` .. ``<loc_999>``, ``<od>``...) and ``<image>``. Model:
    DaViT of 2 stages (16 / 32 wide, strides 4 and 2), 64-pixel input (8 x 8 patches + 1 pooled =
    65 image tokens, the processor's ``image_seq_length``); BART of 1 + 1 layers, 32 wide. The
    output head is untied and zero except its location-token rows (random, times 10), so the
    random model generates location tokens, as the real one does after a phrase. ``loc_tokens=False``:
    the tokenizer lacks the location tokens (a broken checkpoint)."""
    from transformers import (
        BartTokenizer,
        CLIPImageProcessor,
        Florence2Config,
        Florence2ForConditionalGeneration,
        Florence2Processor,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    words = sorted({w for p in [*prompts, "Locate in the image."] for w in p.replace(".", " .").split()})
    chars = sorted({c for w in words for c in w} | {"\u0120"})
    vocab = ["<s>", "<pad>", "</s>", "<unk>", *chars]
    merges: list[tuple[str, str]] = []
    for w in [*words, *("\u0120" + w for w in words)]:
        acc = w[0]
        for c in w[1:]:
            if (acc, c) not in merges:
                merges.append((acc, c))
            acc += c
            if acc not in vocab:
                vocab.append(acc)
    vocab.append("<mask>")
    tok = BartTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges,
                        extra_special_tokens={"image_token": "<image>"})
    extra = ["<od>", "</od>", "<ocr>", "</ocr>", "<poly>", "</poly>", "<sep>"]
    tok.add_tokens([f"<loc_{i}>" for i in range(1000 if loc_tokens else 0)] + extra)
    torch.manual_seed(seed)
    config = Florence2Config(
        vision_config={"depths": [1, 1], "patch_size": [7, 3], "patch_stride": [4, 2], "patch_padding": [3, 1],
                       "patch_prenorm": [False, True], "embed_dim": [16, 32], "num_heads": [2, 2], "num_groups": [2, 2],
                       "window_size": 2, "projection_dim": 32, "drop_path_rate": 0.0},
        text_config={"model_type": "bart", "vocab_size": len(tok), "d_model": 32, "encoder_layers": 1,
                     "decoder_layers": 1, "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                     "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 1024,
                     "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
                     "pad_token_id": tok.pad_token_id, "decoder_start_token_id": tok.eos_token_id},
        image_token_id=tok.image_token_id, tie_word_embeddings=False)
    model = Florence2ForConditionalGeneration(config).eval()
    loc = torch.tensor(tok.convert_tokens_to_ids([f"<loc_{i}>" for i in range(1000)]) if loc_tokens else [],
                       dtype=torch.int64)
    with torch.no_grad():
        w = model.lm_head.weight
        rows = w[loc].clone()
        w.zero_()
        w[loc] = rows * 10
    image_processor = CLIPImageProcessor(size={"height": 64, "width": 64}, do_center_crop=False, image_seq_length=65)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    Florence2Processor(image_processor=image_processor, tokenizer=tok,
                       post_processor_config={"description_with_bboxes_or_polygons": {}}).save_pretrained(dest)
    model.save_pretrained(dest)
    return sha256_path(dest)
