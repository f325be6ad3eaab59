"""Fused attention for segment-anything's SAM image encoder: the same math as
``segment_anything.modeling.image_encoder.Attention.forward`` through
``torch.nn.functional.scaled_dot_product_attention`` (SDPA), with the decomposed relative-position
terms passed as its additive ``attn_mask`` (the "fused attention bias" of pytorch-labs'
segment-anything-fast, ``segment_anything_fast/modeling/image_encoder.py``).

segment-anything computes, per block, with ``q, k, v`` of shape (B * heads, N = H * W, C):
``softmax((q * C**-0.5) @ k^T + bias) @ v``, where ``bias`` is ``add_decomposed_rel_pos``
(MViTv2, Li et al., 2022, arXiv:2112.01526, eq. 4): ``rel_h[b, i, j, k] = q[b, (i, j)] . Rh[i, k]``
and ``rel_w[b, i, j, l] = q[b, (i, j)] . Rw[j, l]`` (``Rh = get_rel_pos(H, H, rel_pos_h)``, Rw
likewise; q unscaled), broadcast to ``bias[b, (i, j), (k, l)] = rel_h[b, i, j, k] + rel_w[b, i, j, l]``.
:class:`SdpaAttention` builds that (B, heads, N, N) bias and hands it to SDPA, which then needs
no (N, N) logits or probabilities of its own (on CUDA a float mask rules out the flash kernel, so
PyTorch picks the memory-efficient or cuDNN one; on the CPU its fused flash-style kernel). Windowed blocks (window 14, the padded windows included: padding
tokens are zeros, exactly as in segment-anything) and global blocks go through the same code;
``Block`` does the window partition before calling the attention module.

Numerics: the same operations in another order, so results differ by float rounding only
(float32: encoder outputs within ~2e-6 of segment-anything's, values up to ~4; see
:class:`labelloop.workspace.model_specs.SegmenterSpec` for the masks, and
``tests/unit/prelabel/test_prelabel_sam_attention.py``). Under autocast
the bias is cast to q's dtype (SDPA needs ``attn_mask`` in the query dtype); segment-anything's
eager path adds the bias in that dtype too, then (on CUDA) takes the softmax in float32.

The patch applies to one model instance: each ``Attention`` module of ``sam.image_encoder``
gets its ``__class__`` swapped to :class:`SdpaAttention` (a subclass with only ``forward``
overridden: same parameters, state dict, ``repr`` and pickling), never the class globally, so
other SAM models in the process are untouched; :func:`set_attention` with ``"eager"`` swaps
them back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos

#: The ``segmenter.attention`` settings: fused SDPA or segment-anything's own eager attention.
ATTENTION_KINDS = ("sdpa", "eager")


def rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                 hw: tuple[int, int]) -> torch.Tensor:
    """segment-anything's decomposed relative-position terms as one additive attention bias.

    Args:
        q: (B, heads, H * W, C) unscaled queries (row-major tokens: index = i * W + j).
        rel_pos_h: (2 * Hs - 1, C) height embeddings (``Attention.rel_pos_h``; interpolated by
            ``get_rel_pos`` when Hs != H, as segment-anything does).
        rel_pos_w: (2 * Ws - 1, C) width embeddings.
        hw: (H, W) token grid of this attention call (a window, or the whole image).

    Returns:
        (B, heads, H * W, H * W) in q's dtype: ``bias[..., (i, j), (k, l)] = q(i, j) . Rh[i, k] +
        q(i, j) . Rw[j, l]``, what ``add_decomposed_rel_pos`` adds to the attention logits.
    """
    h, w = hw
    b, heads, n, c = q.shape
    rh = get_rel_pos(h, h, rel_pos_h)  # (H, H, C)
    rw = get_rel_pos(w, w, rel_pos_w)  # (W, W, C)
    r_q = q.reshape(b * heads, h, w, c)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh)  # (B*heads, H, W, H)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw)  # (B*heads, H, W, W)
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]  # (B*heads, H, W, H, W)
    return bias.reshape(b, heads, n, n).to(q.dtype)


class SdpaAttention(Attention):
    """segment-anything's ``Attention`` with ``forward`` through
    ``F.scaled_dot_product_attention`` (module docstring). Not constructed directly:
    :func:`set_attention` swaps an existing module's class to it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, dim) -> (B, H, W, dim), as ``Attention.forward``."""
        b, h, w, _ = x.shape
        # (3, B, heads, N, C), as segment-anything, without its (B * heads) flattening
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w)) if self.use_rel_pos else None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)  # (B, heads, N, C)
        out = out.view(b, self.num_heads, h, w, -1).permute(0, 2, 3, 1, 4).reshape(b, h, w, -1)
        return self.proj(out)


def set_attention(model: torch.nn.Module, kind: str) -> int:
    """Switch every segment-anything image-encoder ``Attention`` module inside ``model`` (a
    ``Sam``, an ``ImageEncoderViT`` or anything containing them) to ``kind``, in place.

    Args:
        model: the model instance; only its own modules change (the class is not patched).
        kind: ``"sdpa"`` (:class:`SdpaAttention`) or ``"eager"`` (segment-anything's own forward).

    Returns:
        how many attention modules it holds (12 for vit_b, 32 for vit_h).

    Raises:
        ValueError: ``kind`` is not one of :data:`ATTENTION_KINDS`, or ``model`` has no such module.
    """
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"SAM attention must be one of {ATTENTION_KINDS}, not {kind!r}")
    cls = SdpaAttention if kind == "sdpa" else Attention
    modules = [m for m in model.modules() if isinstance(m, Attention)]
    if not modules:
        raise ValueError(f"{type(model).__name__} holds no segment-anything image-encoder Attention module")
    for m in modules:
        m.__class__ = cls
    return len(modules)
