"""HTML sections of the QA report for gold sets, agreement, COCO AP, label errors, label
statistics, cost and calibration. Cells are escaped here; undefined figures show as an em dash
with their reason, never as 0 or NaN."""

from __future__ import annotations

from html import escape


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "&mdash;"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return escape(str(v))


def table(headers, rows) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _ci(ci) -> str:
    return "&mdash;" if not ci or ci[0] is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def gold_html(gold: dict) -> str:
    if not gold or not gold.get("gold_images"):
        return '<p class="muted">No gold set registered (<code>labelloop register-gold FILE</code>).</p>'
    out = f"<p>gold images: <b>{gold['gold_images']}</b> &middot; sets: {escape(', '.join(gold.get('sets', [])))}</p>"
    rows = []
    for rev, f in list(gold.get("reviewers", {}).items()) + [("all reviewers", gold.get("pooled", {}))]:
        if not f or not f.get("images"):
            continue
        d = f["detection"]["overall"]
        rows.append([escape(rev), str(f["images"]), str(f["objects"]), fmt(f["mean_iou"]), _ci(f["mean_iou_ci"]),
                     f"{f['class_correct']}/{f['class_pairs']}", fmt(f["class_accuracy"]),
                     fmt(d["iou@0.5"]["precision"]), fmt(d["iou@0.5"]["recall"]), fmt(d["iou@0.5"]["mean_iou"]),
                     fmt(d["iou@0.75"]["precision"]), fmt(d["iou@0.75"]["recall"]), fmt(d["iou@0.75"]["mean_iou"])])
    if not rows:
        return out + '<p class="muted">No reviewer has annotated a gold image yet.</p>'
    out += table(["reviewer", "gold images", "objects", "mean IoU", "95% interval", "class agree", "class accuracy",
                  "P@0.5", "R@0.5", "mIoU@0.5", "P@0.75", "R@0.75", "mIoU@0.75"], rows)
    errs = [(rev, i, e) for rev, f in gold.get("reviewers", {}).items() for i, e in f.get("errors", {}).items()]
    if errs:
        out += "<p>Disagreements with gold:</p>" + table(
            ["reviewer", "image", "errors"],
            [[escape(r), f"<code>{escape(i[:12])}</code>", escape("; ".join(e))] for r, i, e in errs[:40]])
    return out


def agreement_html(agr: dict) -> str:
    if not agr or not agr.get("double_reviewed_images"):
        why = (agr or {}).get("pooled", {}).get("undefined") or "no image was reviewed by two annotators"
        return f'<p class="muted">Kappa undefined: {escape(why)}.</p>'
    rows = []
    for p in agr.get("pairs", []) + [dict(agr.get("pooled", {}), annotators=["all pairs"], images=agr["double_reviewed_images"])]:
        rows.append([escape(" vs ".join(p["annotators"])), str(p.get("images")), str(p["n_units"]), fmt(p["kappa"]),
                     _ci([p["ci_low"], p["ci_high"]]), fmt(p["se"]), fmt(p["observed_agreement"]),
                     escape(p["undefined"] or "")])
    return (f"<p>double-reviewed images: <b>{agr['double_reviewed_images']}</b></p>"
            + table(["pair", "images", "objects", "Cohen's kappa", "95% interval", "bootstrap SE",
                     "observed agreement", "undefined because"], rows))


def coco_html(mvh: dict) -> str:
    if not mvh:
        return ""
    rows = []
    for kind in ("bbox", "segm"):
        m = mvh.get(kind) or {}
        rows.append([escape("boxes" if kind == "bbox" else "masks"), "all classes", str(m.get("truths", 0)),
                     str(m.get("predictions", 0)), fmt(m.get("AP")), fmt(m.get("AP50")), fmt(m.get("AP75")),
                     escape(m.get("undefined") or "")])
        for cat, r in (m.get("per_class") or {}).items():
            rows.append(["", escape(cat), str(r["truths"]), "", fmt(r["AP"]), fmt(r["AP50"]), fmt(r["AP75"]),
                         escape(r.get("undefined") or "")])
    return table(["type", "class", "human labels", "predictions", "AP", "AP50", "AP75", "undefined because"], rows)


def suspects_html(le: dict) -> str:
    if not le:
        return ""
    out = (f"<p>open suspects: <b>{le.get('open', 0)}</b> &middot; dismissed by reviewers: "
           f"<b>{le.get('dismissed', 0)}</b> &middot; images sent to review: <b>{le.get('images_sent', 0)}</b>"
           + (f" (<code>{escape(le['tasks_file'])}</code>)" if le.get("tasks_file") else "") + "</p>")
    if le.get("undefined"):
        out += f'<p class="muted">{escape(le["undefined"])}</p>'
    rows = [[f"<code>{escape(s['image_id'][:12])}</code>", escape(s["issue"]), escape(s["category"]),
             escape(", ".join(f"{v:.0f}" for v in s["bbox"])), fmt(s["score"]), escape(s["status"])]
            for s in le.get("suspects", [])[:30]]
    if rows:
        out += table(["image", "issue", "class", "box x0,y0,x1,y1", "cleanlab score", "status"], rows)
    return out


def stats_html(st: dict) -> str:
    if not st:
        return ""
    sizes = st.get("box_sizes", {})
    rows = [[escape(c), str(b["small"]), str(b["medium"]), str(b["large"]),
             *(fmt(sizes.get("area_quantiles", {}).get(c, {}).get(q), 1) for q in ("p10", "p50", "p90"))]
            for c, b in sizes.get("buckets", {}).items()]
    out = table(["class", "small", "medium", "large", "area p10", "area p50", "area p90"], rows)
    o = st.get("objects_per_image", {})
    out += (f"<p>objects per image: mean <b>{fmt(o.get('mean'))}</b> &middot; median <b>{fmt(o.get('median'))}</b>"
            f" &middot; max <b>{fmt(o.get('max'))}</b> over {o.get('images', 0)} images</p>")
    d = st.get("drift", {})
    if d.get("undefined") and not d.get("classes"):
        return out + f'<p class="muted">class-balance drift: {escape(d["undefined"])}</p>'
    out += (f"<p>class-balance drift from <code>{escape(str(d.get('previous_release')))}</code>: largest share change "
            f"<b>{fmt(d.get('max_abs_change'))}</b> &middot; Jensen-Shannon distance <b>{fmt(d.get('js_distance'))}</b>"
            + (f" ({escape(d['undefined'])})" if d.get("undefined") else "") + "</p>")
    out += table(["class", "labels then", "labels now", "share then", "share now", "change"],
                 [[escape(c), str(v["then"]), str(v["now"]), fmt(v["share_then"]), fmt(v["share_now"]), fmt(v["change"])]
                  for c, v in d.get("classes", {}).items()])
    return out


def cost_html(c: dict) -> str:
    if not c:
        return ""
    cur = escape(c["currency"])
    h, r = c["by_hand"], c["review_done"]
    return (table(["", "images", "boxes", "masks", "accepted", "corrected", "added", "deleted", f"total ({cur})"],
                  [["labeling the release by hand", str(h["images"]), str(h["boxes"]), str(h["masks"]), "", "", "", "",
                    f"{h['total']:.2f}"],
                   ["review actually done", str(r["images"]), "", str(r["masks"]), str(r["accepted"]),
                    str(r["corrected"]), str(r["added"]), str(r["deleted"]), f"{r['total']:.2f}"]])
            + f"<p>saving: <b>{c['saving']:.2f} {cur}</b>"
            + (f" ({c['saving_share'] * 100:.1f}% of hand labeling)" if c.get("saving_share") is not None else "")
            + " &middot; prices: " + escape(", ".join(f"{k} {v}" for k, v in c["prices"].items() if k != "currency"))
            + "</p>")


def calibration_html(cal: dict) -> str:
    if not cal or not cal.get("policy_id"):
        return ('<p class="muted">Routing uses the thresholds of labelloop.yaml (no calibrated policy; '
                "<code>labelloop calibrate</code> fits one from reviewed outcomes).</p>")
    e = cal.get("estimate", {})
    out = (f"<p>active policy <code>{escape(cal['policy_id'])}</code> (fitted on {cal.get('data', {}).get('predictions')} "
           f"reviewed predictions of {cal.get('data', {}).get('images')} images): share of images routed to review "
           f"<b>{fmt(e.get('review_share_before'))}</b> &rarr; <b>{fmt(e.get('review_share_after'))}</b>")
    if e.get("review_share_before") is not None and e.get("review_share_after") is not None:
        out += f" (review saved on {max(0.0, e['review_share_before'] - e['review_share_after']) * 100:.1f}% of images)"
    out += "</p>"
    rows = [[escape(c), fmt(f.get("previous_high")), fmt(f.get("high")), str(f.get("n")), str(f.get("errors")),
             fmt(f.get("precision"), 4), fmt(f.get("ci_low"), 4), escape(f.get("reason", ""))]
            for c, f in cal.get("per_class", {}).items()]
    return out + table(["class", "high before", "high now", "reviewed", "errors", "precision", "95% lower",
                        "reason"], rows)


def levels_html(levels: list) -> str:
    """The level recommendation (:mod:`labelloop.qa.levels`): per class, the configured level, the
    median mask-fill ratio and its masks, the recommended level, the next level's cost and the rule."""
    if not levels:
        return ""
    rows = [[escape(a["category"]), escape(a["level"]), fmt(a["fill_median"]),
             f"{a['masks']} ({a['fill_sources']['human']} human, {a['fill_sources']['prelabel']} pre-label)",
             f"<b>{escape(a['recommended'])}</b>", str(a["objects"]),
             "&mdash;" if a["next_level"] is None else f"{escape(a['next_level'])}: {a['next_level_cost']:.2f} "
                                                       f"{escape(a['currency'])}",
             escape(a["reason"])] for a in levels]
    return (table(["class", "level", "median fill", "masks", "recommended", "objects", "next level cost", "why"], rows)
            + '<p class="muted">A recommendation only: <code>labelloop.yaml</code> is never changed by it.</p>')


def tags_html(t: dict) -> str:
    """Image-level tags (:mod:`labelloop.qa.tags`): pre-label precision / recall against the reviewers
    per tag category, and Cohen's kappa of two reviewers' tags."""
    if not t:
        return ""
    pr, ag = t.get("prelabel_vs_human") or {}, t.get("agreement") or {}
    rows = []
    for c in t.get("categories", []):
        p, k = pr.get(c) or {}, (ag.get("per_category") or {}).get(c) or {}
        rows.append([escape(c), str(p.get("tp", 0)), str(p.get("fp", 0)), str(p.get("fn", 0)), fmt(p.get("precision")),
                     _ci(p.get("precision_ci")), fmt(p.get("recall")), _ci(p.get("recall_ci")),
                     fmt(k.get("kappa")) if k.get("kappa") is not None else escape(k.get("undefined") or "&mdash;"),
                     _ci((k.get("ci_low"), k.get("ci_high")))])
    pooled = ag.get("pooled") or {}
    return (f"<p>reviewed images with a tag answer: <b>{t.get('reviewed_images', 0)}</b> &middot; double-reviewed: "
            f"{ag.get('double_reviewed_images', 0)} &middot; pooled kappa: "
            + (fmt(pooled.get("kappa")) if pooled.get("kappa") is not None else escape(pooled.get("undefined") or "—"))
            + "</p>"
            + table(["tag", "TP", "FP", "FN", "precision", "95% CI", "recall", "95% CI", "kappa", "95% CI"], rows)
            + '<p class="muted">Pre-label = the best kept score of the tag category on the image; '
              "&mdash; = undefined (no tag pre-label, or no double review).</p>")
