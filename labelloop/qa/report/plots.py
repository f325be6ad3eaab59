"""Matplotlib figures of the QA report, as PNG bytes (Agg canvas, no pyplot state, no timestamps).

Each function returns ``None`` when it has nothing to draw, so the page says so instead of
showing an empty frame.
"""

from __future__ import annotations

import io

import numpy as np

DPI = 100
PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # heavy: only when a figure is drawn
    from matplotlib.figure import Figure  # heavy: only when a figure is drawn

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    import matplotlib  # heavy: only when a figure is drawn

    with matplotlib.rc_context({"svg.hashsalt": "labelloop"}):
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def pr_curves_png(model_vs_human: dict) -> bytes | None:
    """Precision-recall curves per class at IoU 0.5 (COCO's 101 recall points), boxes and masks."""
    panels = [(k, model_vs_human.get(k) or {}) for k in ("bbox", "segm")]
    panels = [(k, m) for k, m in panels if m.get("pr_curves")]
    if not panels:
        return None
    fig = _figure(4.6 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (kind, m) in zip(axes, panels):
        for i, (cat, curve) in enumerate(sorted(m["pr_curves"].items())):
            ap = (m.get("per_class", {}).get(cat) or {}).get("AP50")
            label = f"{cat} (AP50 {ap:.3f})" if ap is not None else cat
            ax.plot(curve["recall"], curve["precision"], color=PALETTE[i % len(PALETTE)], label=label, lw=1.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{'boxes' if kind == 'bbox' else 'masks'}: PR at IoU 0.5")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    return _png(fig)


def confusion_png(matrices: list[tuple[str, dict[str, dict[str, int]], str, str]]) -> bytes | None:
    """Confusion matrices side by side: ``(title, {row_class: {col_class: n}}, row_name, col_name)``."""
    matrices = [m for m in matrices if m[1]]
    if not matrices:
        return None

    fig = _figure(4.2 * len(matrices), 3.9)
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    for ax, (title, conf, rname, cname) in zip(axes, matrices):
        classes = sorted({r for r in conf} | {c for row in conf.values() for c in row})
        mat = np.array([[conf.get(r, {}).get(c, 0) for c in classes] for r in classes])
        ax.imshow(mat, cmap="Blues", vmin=0)
        ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        top = mat.max() if mat.size else 0
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, str(mat[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if top and mat[i, j] > top / 2 else "black")
        ax.set_ylabel(rname)
        ax.set_xlabel(cname)
        ax.set_title(title, fontsize=10)
    return _png(fig)


def box_sizes_png(sizes: dict, objects: dict) -> bytes | None:
    """Boxes per COCO size bucket and class, and the objects-per-image histogram."""
    buckets = sizes.get("buckets") or {}
    hist = objects.get("histogram") or {}
    if not buckets and not hist:
        return None
    fig = _figure(9, 3.0)
    ax1, ax2 = fig.subplots(1, 2)
    cats = list(buckets)
    bottom = [0] * len(cats)
    for i, b in enumerate(("small", "medium", "large")):
        vals = [buckets[c][b] for c in cats]
        ax1.bar(cats, vals, bottom=bottom, label=b, color=PALETTE[i])
        bottom = [x + v for x, v in zip(bottom, vals)]
    ax1.set_title("boxes per class by COCO size")
    if cats:
        ax1.legend(fontsize=8)
    ax2.bar(list(hist), list(hist.values()), color="#54aeff")
    ax2.set_title("objects per image")
    ax2.set_xlabel("objects")
    ax2.set_ylabel("images")
    return _png(fig)


def calibration_png(policy: dict | None) -> bytes | None:
    """Reviewed precision (and its 95% lower bound) against the threshold, per class."""
    if not policy or not any(f.get("curve") for f in policy.get("per_class", {}).values()):
        return None
    fig = _figure(6, 3.4)
    ax = fig.subplots()
    for i, (cat, f) in enumerate(sorted(policy["per_class"].items())):
        if not f.get("curve"):
            continue
        t = [p[0] for p in f["curve"]]
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(t, [p[2] for p in f["curve"]], color=colour, label=f"{cat} precision")
        ax.plot(t, [p[3] for p in f["curve"]], color=colour, ls="--", label=f"{cat} 95% lower bound")
        if f.get("high") is not None:
            ax.axvline(f["high"], color=colour, lw=0.8, ls=":")
    target = (policy.get("settings") or {}).get("precision_target")
    if target:
        ax.axhline(target, color="#cf222e", lw=1, label=f"target {target}")
    ax.set_xlabel("score threshold (predictions with score >= t)")
    ax.set_ylabel("reviewed precision")
    ax.set_title("calibration: reviewed precision by threshold")
    ax.legend(fontsize=7)
    return _png(fig)
