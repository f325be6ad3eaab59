"""Self-contained HTML page of a QA report (:func:`labelloop.qa.metrics.build_qa_report`).

Inline CSS, images as base64 PNG data URIs, no external URL. Byte-deterministic: matplotlib
figures are drawn with the Agg canvas directly (no pyplot global state), saved at a fixed dpi
with the ``Software`` PNG metadata removed (no version or timestamp in the bytes); Pillow
writes no timestamp into PNG files.
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

from labelloop.qa.report import plots as RP
from labelloop.qa.report import sections as RS

DPI = 100
STATUS_COLOURS = {"pass": "#1a7f37", "warn": "#b58100", "fail": "#cf222e", "not_measured": "#8c959f"}
# Okabe-Ito blue / orange
ORIGIN_COLOURS: dict[str | None, tuple[int, int, int]] = {"human": (0, 114, 178), "model": (230, 97, 0)}
MAX_SIDE = 800
GALLERY_SIDE = 400

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#1f2328;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.status{color:#fff;font-weight:bold;padding:2px 8px;border-radius:4px}
code{background:#f6f8fa;padding:1px 4px;border-radius:3px}.muted{color:#656d76}
.bar{position:relative;height:18px;background:#eaeef2;width:500px;margin:.5em 0}
.ci{position:absolute;top:0;height:18px;background:#54aeff}
.target{position:absolute;top:-4px;height:26px;width:2px;background:#cf222e}
.gallery{display:flex;flex-wrap:wrap;gap:12px}figure.g{margin:0;max-width:410px}figcaption{font-size:.85em}
img.plot{max-width:100%}
"""


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "&mdash;"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return escape(str(v))


def _status(s: str) -> str:
    colour = STATUS_COLOURS.get(s, "#57606a")
    return f'<span class="status" style="background:{colour}">{escape(str(s).replace("_", " ").upper())}</span>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """HTML table; cells are already-escaped HTML fragments."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _counts_plot(counts: dict) -> bytes:
    """Bar charts: images per route, and labels per class stacked by route (PNG bytes)."""
    import matplotlib  # heavy: only when a figure is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # heavy: only when a figure is drawn
    from matplotlib.figure import Figure  # heavy: only when a figure is drawn
    from matplotlib.ticker import MaxNLocator  # heavy: only when a figure is drawn

    with matplotlib.rc_context({"svg.hashsalt": "labelloop", "font.size": 9}):
        fig = Figure(figsize=(9, 3.2), dpi=DPI)
        FigureCanvasAgg(fig)
        ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
        routes = counts.get("routes", {})
        ax1.bar(list(routes), list(routes.values()), color="#54aeff")
        ax1.set_title("images per route")
        ax1.tick_params(axis="x", labelrotation=15)
        classes = counts.get("classes", {})
        cats = list(classes)
        route_names = sorted({r for d in classes.values() for r in d.get("by_route", {})})
        bottom = [0] * len(cats)
        palette = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00"]
        for i, r in enumerate(route_names):
            vals = [classes[c]["by_route"].get(r, 0) for c in cats]
            ax2.bar(cats, vals, bottom=bottom, label=r, color=palette[i % len(palette)])
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax2.set_title("labels per class, by route")
        if route_names:
            ax2.legend(fontsize=8)
        if not cats:
            ax2.text(0.5, 0.5, "no labels", ha="center", va="center", transform=ax2.transAxes)
        for ax in (ax1, ax2):
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _example_png(image: Image.Image, boxes: Sequence[dict]) -> bytes:
    """The image (longest side <= 800 px) with its boxes: human blue, model orange, with text."""
    img = image.convert("RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR)  # longest side <= MAX_SIDE, aspect kept, never enlarged
    scale = img.width / image.width
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for b in boxes:
        colour = ORIGIN_COLOURS.get(b.get("origin"), (128, 128, 128))
        x0, y0, x1, y1 = (float(v) * scale for v in b["bbox"])
        draw.rectangle([x0, y0, x1, y1], outline=colour, width=3 if b.get("origin") == "human" else 2)
        text = f"{b.get('category')} ({b.get('origin')})"
        tx0, ty0, tx1, ty1 = draw.textbbox((x0, y0), text, font=font)
        ty = y0 - (ty1 - ty0) - 2 if y0 - (ty1 - ty0) - 2 >= 0 else y0
        draw.rectangle([x0, ty, x0 + (tx1 - tx0) + 4, ty + (ty1 - ty0) + 2], fill=colour)
        draw.text((x0 + 2, ty), text, fill=(255, 255, 255), font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _gates_html(gates: Sequence[dict]) -> str:
    rows = []
    for g in gates:
        imgs = g.get("images") or []
        shown = ", ".join(f"<code>{escape(str(i)[:12])}</code>" for i in imgs[:10])
        if len(imgs) > 10:
            shown += f" &hellip; (+{len(imgs) - 10})"
        rows.append([escape(g["name"]), "yes" if g.get("blocking") else "no", _status(g["status"]),
                     _fmt(g.get("value"), 4), _fmt(g.get("threshold"), 4), escape(str(g.get("reason", ""))),
                     shown])
    return _table(["gate", "blocking", "status", "value", "threshold", "reason", "images"], rows)


def _counts_html(counts: dict) -> str:
    routes = counts.get("routes", {})
    out = _table(["route", "images"], [[escape(r), f'<span class="num">{n}</span>'] for r, n in routes.items()])
    classes = counts.get("classes", {})
    origins = sorted({o for d in classes.values() for o in d.get("by_origin", {})})
    route_names = sorted({r for d in classes.values() for r in d.get("by_route", {})})
    rows = [[escape(c), str(d["total"])] + [str(d["by_origin"].get(o, 0)) for o in origins]
            + [str(d["by_route"].get(r, 0)) for r in route_names] for c, d in classes.items()]
    out += _table(["class", "labels"] + [f"origin {o}" for o in origins] + [f"route {r}" for r in route_names], rows)
    extra = [(k, v) for k, v in counts.items() if k not in ("routes", "classes")]
    out += "<p>" + " &middot; ".join(f"{escape(k.replace('_', ' '))}: <b>{_fmt(v)}</b>" for k, v in extra) + "</p>"
    return out


def _metrics_html(metrics: dict) -> str:
    overall = metrics.get("overall", {})
    keys = list(overall)
    rows = []
    for name, per in [("all classes", overall)] + list(metrics.get("per_class", {}).items()):
        for k in keys:
            m = per.get(k)
            if m is None:
                continue
            rows.append([escape(name), escape(k), str(m["tp"]), str(m["fp"]), str(m["fn"]),
                         _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["mean_iou"])])
    return _table(["class", "IoU", "TP", "FP", "FN", "precision", "recall", "mean IoU"], rows)


def _release_error_html(r: dict) -> str:
    """The ``release_error_rate`` strata (:mod:`labelloop.qa.release_error`) as a table."""
    if not r:
        return '<p class="muted">not computed</p>'
    rows = [[escape(str(x["stratum"])), _fmt(x["weight"], 4), str(x["images"]), f"{x['k']}/{x['n']}",
             _fmt(x["rate"], 4), f"[{_fmt(x['ci_low'], 4)}, {_fmt(x['ci_high'], 4)}]", _fmt(x.get("needed"))]
            for x in r.get("strata", [])]
    return (f"<p>{_status(r.get('status', ''))} {escape(str(r.get('reason', '')))}</p>"
            '<p class="muted">estimate = sum of w p over the strata; MOVER-Wilson interval (Zou &amp; Donner '
            "2008) from each stratum's Wilson interval; auto-accepted strata by their model's audit, the reviewed "
            "stratum by the reviewers' image-level error on gold images.</p>"
            + _table(["stratum", "weight w", "images", "errors k/n", "rate p", "Wilson interval", "n to settle"],
                     rows))


def _audit_html(a: dict) -> str:
    lo, hi, target = a.get("ci_low") or 0.0, a.get("ci_high") or 0.0, a.get("target") or 0.0
    bar = (f'<div class="bar" title="interval and target on a 0-1 scale">'
           f'<div class="ci" style="left:{lo * 100:.2f}%;width:{max(hi - lo, 0.002) * 100:.2f}%"></div>'
           f'<div class="target" style="left:{target * 100:.2f}%"></div></div>')
    conf = a.get("confidence") or 0.0
    text = (f"<p>{_status(a.get('status', ''))} {escape(str(a.get('reason', '')))}</p>"
            f"<p>audited images: <b>{a.get('n_audited')}</b> &middot; in error: <b>{a.get('n_errors')}</b>"
            f" &middot; error rate: <b>{_fmt(a.get('error_rate'), 4)}</b> &middot; "
            f"{conf * 100:g}% Wilson interval: <b>[{_fmt(lo, 4)}, {_fmt(hi, 4)}]</b> &middot; target: "
            f"<b>{_fmt(target, 4)}</b> &middot; audit size needed: <b>{_fmt(a.get('sample_size_needed'))}</b></p>")
    errs = a.get("errors") or {}
    if errs:
        text += _table(["image", "errors"], [[f"<code>{escape(str(i))}</code>", escape("; ".join(e))]
                                             for i, e in errs.items()])
    return text + bar + '<p class="muted">blue: interval (0 to 1 scale); red line: target</p>'


def _schema_html(s: dict) -> str:
    out = f"<p>{_status(s.get('status', ''))} {s.get('n_invalid')} invalid of {s.get('n_labels')} labels</p>"
    if s.get("problems"):
        out += _table(["label", "image", "problem"], [[f"<code>{escape(str(p['label_id']))}</code>",
                                                      f"<code>{escape(str(p['image_id']))}</code>",
                                                      escape(p["problem"])] for p in s["problems"]])
    return out


def _pair_png(image: Image.Image, set_a: dict, set_b: dict) -> bytes:
    """The image (longest side <= 400 px) with two label sets: ``set_a`` blue (solid, 3 px),
    ``set_b`` orange (2 px); each set ``{"name", "boxes": [{"category", "bbox"}]}``."""
    img = image.convert("RGB")
    img.thumbnail((GALLERY_SIDE, GALLERY_SIDE), Image.Resampling.BILINEAR)  # longest side <= GALLERY_SIDE, aspect kept, never enlarged
    scale = img.width / image.width
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for colour, width, s in ((ORIGIN_COLOURS["human"], 3, set_a), (ORIGIN_COLOURS["model"], 2, set_b)):
        for b in s.get("boxes", []):
            x0, y0, x1, y1 = (float(v) * scale for v in b["bbox"])
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=width)
            draw.text((x0 + 2, y0 + 1), str(b.get("category")), fill=colour, font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _gallery_html(gallery: Sequence[tuple[Image.Image, dict]]) -> str:
    if not gallery:
        return '<p class="muted">No image with two label sets to compare yet (gold, double review or model vs human).</p>'
    cells = []
    for image, entry in gallery:
        a, b = entry["set_a"], entry["set_b"]
        cells.append(
            f'<figure class="g"><img alt="{escape(entry["title"])}" src="{_png_data_uri(_pair_png(image, a, b))}">'
            f'<figcaption><code>{escape(entry["image_id"][:12])}</code> {escape(entry["title"])}<br>'
            f'<span style="color:#0072b2">&#9632; {escape(a["name"])}</span> &nbsp; '
            f'<span style="color:#e66100">&#9632; {escape(b["name"])}</span></figcaption></figure>')
    return '<div class="gallery">' + "".join(cells) + "</div>"


def _plot(png: bytes | None, alt: str, missing: str) -> str:
    if png is None:
        return f'<p class="muted">{escape(missing)}</p>'
    return f'<img class="plot" alt="{escape(alt)}" src="{_png_data_uri(png)}">'


def _extra_sections(report: dict, gallery) -> list[str]:

    mvh = report.get("model_vs_human") or {}
    stats = report.get("label_stats") or {}
    conf = [("model vs human (reviewed)", report.get("model_confusion") or {}, "model", "human"),
            ("reviewer vs gold", (report.get("gold") or {}).get("pooled", {}).get("confusion") or {}, "reviewer", "gold"),
            ("reviewer A vs B", (report.get("agreement") or {}).get("pooled", {}).get("confusion") or {}, "A", "B")]
    return [
        "<h2>Reviewers vs gold set (honeypots)</h2>", RS.gold_html(report.get("gold") or {}),
        "<h2>Inter-annotator agreement</h2>", RS.agreement_html(report.get("agreement") or {}),
        "<h2>Model vs human: COCO AP (pycocotools)</h2>",
        '<p class="muted">Reviewed images; human labels are the ground truth. Informs routing, never blocks.</p>',
        RS.coco_html(mvh),
        _plot(RP.pr_curves_png(mvh), "precision-recall curves", "No PR curve: no reviewed ground truth yet."),
        "<h2>Confusion matrices</h2>",
        '<p class="muted">Objects matched one to one by IoU &ge; 0.5 regardless of class; "missing" = no match.</p>',
        _plot(RP.confusion_png(conf), "confusion matrices", "No matched objects to tabulate yet."),
        "<h2>Worst-agreeing images</h2>", _gallery_html(gallery or []),
        "<h2>Possible label errors (cleanlab)</h2>", RS.suspects_html(report.get("label_errors") or {}),
        "<h2>Label statistics and class-balance drift</h2>", RS.stats_html(stats),
        _plot(RP.box_sizes_png(stats.get("box_sizes") or {}, stats.get("objects_per_image") or {}),
              "box sizes and objects per image", "No label yet."),
        "<h2>Cost</h2>", RS.cost_html(report.get("cost") or {}),
        "<h2>Annotation level per class</h2>", RS.levels_html(report.get("levels") or []),
        *(["<h2>Image-level tags</h2>", RS.tags_html(report["tags"])] if report.get("tags") else []),
        "<h2>Calibrated routing</h2>", RS.calibration_html(report.get("calibration") or {}),
        _plot(RP.calibration_png(report.get("calibration")), "calibration curves", "No calibration curve."),
    ]


def _guidelines_html(g: dict | None) -> str:
    """The labeling guidelines' version (sha256 of guidelines.md) and the human labels per version."""
    if not g:
        return ""
    by = ", ".join(f"<code>{escape(k[:12])}</code> {v}" for k, v in g.get("human_labels_by_version", {}).items())
    return (f"<p>guidelines sha256 <code>{escape(str(g.get('sha256')))}</code>"
            + (f" &middot; human labels by guidelines version: {by}" if by else "") + "</p>")


def render_html(report: dict, example: tuple[Image.Image, list[dict]] | None,
                gallery: Sequence[tuple[Image.Image, dict]] | None = None) -> str:
    """The QA report as one self-contained, byte-deterministic HTML page.

    Args:
        report: the dict of :func:`labelloop.qa.metrics.build_qa_report`, extended by
            :func:`labelloop.qa.run.build_report` (gold, agreement, model_vs_human, ...).
        example: an image and its boxes (dicts with category, bbox xyxy pixels, origin
            ``human`` | ``model``) to draw, or ``None`` to leave the example out.
        gallery: worst-agreeing images, each ``(image, {"image_id", "title", "set_a": {"name",
            "boxes"}, "set_b": {...}})`` (see :func:`labelloop.qa.run.gallery_entries`).
    """
    counts = report.get("counts", {})
    scope = report.get("scope") or "all labels (release candidate)"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>labelloop QA report</title>',
        f"<style>{CSS}</style></head><body>",
        f"<h1>labelloop QA report: {escape(str(scope))}</h1>",
        f"<p>labels sha256 <code>{escape(str(report.get('labels_sha256')))}</code> &middot; "
        f"policy <code>{escape(str(report.get('policy_id')))}</code>"
        + (f" &middot; model <code>{escape(str(report['model_id']))}</code>" if report.get("model_id") else "")
        + "</p>",
        _guidelines_html(report.get("guidelines")),
        "<h2>Gates</h2>", _gates_html(report.get("gates", [])),
        "<h2>Counts</h2>", _counts_html(counts),
        f'<img alt="images per route and labels per class" src="{_png_data_uri(_counts_plot(counts))}">',
        "<h2>Release error rate</h2>", _release_error_html(report.get("release_error") or {}),
        "<h2>Audit of auto-accepted labels (QA sample; the pre-labeler's figure, not a gate)</h2>",
        _audit_html(report.get("audit", {})),
        "<h2>Pre-labels vs human labels (reviewed images)</h2>",
        '<p class="muted">COCO-style greedy matching per image and class, predictions by descending '
        "score; &mdash; = undefined.</p>",
        _metrics_html(report.get("prelabel_vs_human", {})),
        "<h2>Schema</h2>", _schema_html(report.get("schema", {})),
    ]
    if any(k in report for k in ("gold", "agreement", "model_vs_human", "label_stats", "cost")):
        parts += _extra_sections(report, gallery)
    if example is not None:
        image, boxes = example
        parts += [
            "<h2>Example</h2>",
            '<p><span style="color:#0072b2">&#9632; human</span> &nbsp; '
            '<span style="color:#e66100">&#9632; model</span></p>',
            f'<img alt="example image with its boxes" src="{_png_data_uri(_example_png(image, boxes))}">',
        ]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
