"""What labelloop sends to Label Studio: the labeling config and import tasks with pre-annotations.

Formats follow Label Studio 1.23 (pinned by the real files in ``tests/fixtures/label-studio-1.23.2``):
labeling config (docs "Labeling configuration", tags ``RectangleLabels``, ``PolygonLabels``,
``BrushLabels``, ``KeyPointLabels``, ``Choices``), import tasks with predictions (docs "Import pre-annotated
data"). :mod:`labelloop.formats.labelstudio.reader` re-exports everything here.

Control names (the ``from_name`` of results; imports reject any other): ``label``
(RectangleLabels), ``polygon`` (PolygonLabels, only when asked for), ``brush`` (BrushLabels of
the categories with ``masks: true``; pre-labels' masks go as brush regions, see
:mod:`labelloop.formats.labelstudio.brush`), ``keypoint``
(KeyPointLabels, when a category has keypoints) and ``keypoint_visibility`` (per-region Choices
``visible`` / ``occluded``; see :mod:`labelloop.geometry.keypoints` for the visibility convention) and
``tags`` (a multi-label image-level ``Choices``, ``choice="multiple"``, of the ``level: tag``
categories: progressive labeling; its result is ``{"from_name": "tags", "type": "choices",
"value": {"choices": [category, ...]}}``), all on the object ``image``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from labelloop.formats.labelstudio.brush import mask_to_brush_rle
from labelloop.geometry.boxes import xyxy_to_ls
from labelloop.geometry.keypoints import CHOICE_OCCLUDED, CHOICE_VISIBLE, VISIBILITY_CONTROL, ls_keypoint_results
from labelloop.tables.schemas import ExportedPredictionRow, ImageRow, PredictionRow
from labelloop.workspace.config import RESERVED_TAG_ANSWER

TOOL = "label-studio"
OBJECT_NAME = "image"  # <Image name="image" value="$image"/>
CONTROL_NAME = "label"  # <RectangleLabels name="label" toName="image">
POLYGON_CONTROL = "polygon"  # <PolygonLabels name="polygon" toName="image">
BRUSH_CONTROL = "brush"  # <BrushLabels name="brush" toName="image">
KEYPOINT_CONTROL = "keypoint"  # <KeyPointLabels name="keypoint" toName="image">
TAG_CONTROL = "tags"  # <Choices name="tags" toName="image" choice="multiple">: the tag categories
#: Reserved choice of the ``tags`` control, offered when the project has box categories too: the
#: reviewer checked the image for boxes and there are none (a negative for the box categories). A
#: reviewed image with tags, no box and without this choice is not a box negative: the release
#: leaves it out of the box / mask annotations (docs/guides/label-studio.md, "Image-level tags").
NO_OBJECTS_CHOICE = RESERVED_TAG_ANSWER
REGION_TYPE = "rectanglelabels"
#: Control name -> Label Studio result type of every control in labelloop's labeling config.
CONTROLS = {CONTROL_NAME: REGION_TYPE, POLYGON_CONTROL: "polygonlabels", BRUSH_CONTROL: "brushlabels",
            KEYPOINT_CONTROL: "keypointlabels", VISIBILITY_CONTROL: "choices", TAG_CONTROL: "choices"}
LOCAL_FILES_PREFIX = "/data/local-files/?d="


def _labels(values: list[str]) -> list[str]:
    return [f"    <Label value={quoteattr(v)}/>" for v in values]


def label_config_xml(categories: list[str], keypoints: dict[str, list[str]] | None = None,
                     polygons: bool = False, masks: list[str] | None = None, tags: list[str] | None = None) -> str:
    """Labeling config: ``<View>`` with ``<Image name="image" value="$image"/>`` and
    ``<RectangleLabels name="label" toName="image">`` holding one ``<Label value=.../>`` per
    category, in the given order (Label Studio docs, "RectangleLabels tag"). Values are
    XML-escaped. With ``polygons`` a ``<PolygonLabels name="polygon">`` of the same categories
    follows; with ``masks`` (the categories configured with ``masks: true``) a ``<BrushLabels
    name="brush">`` of those categories, in which the pre-labels' masks are shown and edited; with ``keypoints`` (``{category: [keypoint names]}``) a ``<KeyPointLabels
    name="keypoint">`` of every keypoint name and the per-region ``<Choices
    name="keypoint_visibility" perRegion="true">`` (``visible`` / ``occluded``) that carries COCO's
    visibility flag (:mod:`labelloop.geometry.keypoints`). With ``tags`` (the ``level: tag``
    categories, image-level labels) a multi-label ``<Choices name="tags" toName="image"
    choice="multiple" showInline="true">`` with one ``<Choice value=.../>`` per tag category
    (Label Studio docs, "Choices tag"), then, when ``categories`` (the box categories only; may be
    empty) is not empty, the reserved ``<Choice value="no objects"/>`` (:data:`NO_OBJECTS_CHOICE`). Without any of them, the output is the plain rectangle config
    (``tests/fixtures/label-studio-1.23.2/label_config.xml``).

    Raises:
        ValueError: no categories (and no tags), a duplicate or empty category name (tags
            included), a category named ``no objects`` (reserved), a keypoint or mask category not in ``categories``, or a keypoint name used
            by two categories.
    """
    every = list(categories) + list(tags or [])
    if not every or len(set(every)) != len(every) or any(not c for c in every):
        raise ValueError(f"categories must be a non-empty list of unique, non-empty names: {every}")
    if NO_OBJECTS_CHOICE in every:
        raise ValueError(f"category name {NO_OBJECTS_CHOICE!r} is reserved (the tags control's 'checked, no boxes' choice)")
    if not categories:
        lines = [f'  <Image name="{OBJECT_NAME}" value="${OBJECT_NAME}"/>', *_tag_choices(tags or [])]
        return "\n".join(["<View>", *lines, "</View>"])
    lines = [f'  <Image name="{OBJECT_NAME}" value="${OBJECT_NAME}"/>',
             f'  <RectangleLabels name="{CONTROL_NAME}" toName="{OBJECT_NAME}">', *_labels(categories),
             "  </RectangleLabels>"]
    if polygons:
        lines += [f'  <PolygonLabels name="{POLYGON_CONTROL}" toName="{OBJECT_NAME}">', *_labels(categories),
                  "  </PolygonLabels>"]
    if masks:
        unknown = sorted(set(masks) - set(categories))
        if unknown:
            raise ValueError(f"mask categories {unknown} are not in {categories}")
        lines += [f'  <BrushLabels name="{BRUSH_CONTROL}" toName="{OBJECT_NAME}">',
                  *_labels([c for c in categories if c in set(masks)]), "  </BrushLabels>"]
    if keypoints:
        names: list[str] = []
        for cat, kps in keypoints.items():
            if cat not in categories:
                raise ValueError(f"keypoint category {cat!r} is not one of {categories}")
            clash = sorted(set(names) & set(kps))
            if clash:
                raise ValueError(f"keypoint names {clash} are used by two categories; they must be unique")
            names += list(kps)
        lines += [f'  <KeyPointLabels name="{KEYPOINT_CONTROL}" toName="{OBJECT_NAME}">', *_labels(names),
                  "  </KeyPointLabels>",
                  f'  <Choices name="{VISIBILITY_CONTROL}" toName="{OBJECT_NAME}" perRegion="true" '
                  f'visibleWhen="region-selected" whenTagName="{KEYPOINT_CONTROL}" choice="single">',
                  f'    <Choice value="{CHOICE_VISIBLE}"/>', f'    <Choice value="{CHOICE_OCCLUDED}"/>', "  </Choices>"]
    lines += _tag_choices(tags or [], no_objects=True)
    return "\n".join(["<View>", *lines, "</View>"])


def _tag_choices(tags: list[str], no_objects: bool = False) -> list[str]:
    if not tags:
        return []
    return ([f'  <Choices name="{TAG_CONTROL}" toName="{OBJECT_NAME}" choice="multiple" showInline="true">']
            + [f"    <Choice value={quoteattr(t)}/>" for t in tags]
            + ([f"    <Choice value={quoteattr(NO_OBJECTS_CHOICE)}/>"] if no_objects else []) + ["  </Choices>"])


def image_reference(uri: str) -> str:
    """Label Studio local-files URL of a workspace-relative ``uri``:
    ``"/data/local-files/?d=" + quote(uri)`` (slashes kept). Requires
    ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` = the workspace root (docs, "Local storage").
    An ``s3://`` uri (the S3 store, :mod:`labelloop.store`) is returned as it is: Label Studio
    resolves it through a connected S3 source storage (docs, "Cloud storage", presigned URLs)."""
    if uri.startswith(("s3://", "gs://", "azure-blob://")):
        return uri
    return LOCAL_FILES_PREFIX + quote(uri.lstrip("/"), safe="/")


def build_import_tasks(
    images: Sequence[ImageRow], predictions: Sequence[PredictionRow], model_version: str, batch: str,
    reviewers: dict[str, int] | None = None, keypoints: dict[str, list[str]] | None = None,
    masks: list[str] | set[str] | None = None, tags: list[str] | set[str] | None = None,
) -> tuple[list[dict], list[ExportedPredictionRow]]:
    """Label Studio import tasks with pre-annotations (docs, "Import pre-annotated data").

    Args:
        images: IMAGES rows to send (``image_id, uri, source_path, width, height``); one task per
            distinct image_id (a byte-identical duplicate is sent once, under its original).
        predictions: PREDICTIONS rows; those of other images are ignored. A row with
            ``keypoints`` (flat COCO x, y, v list) of a category in ``keypoints`` also gets its
            keypoint regions (:func:`labelloop.geometry.keypoints.ls_keypoint_results`).
        model_version: written on each task's prediction.
        batch: the export name; EXPORTED_PREDICTIONS rows get ``source = "labelloop/<batch>"``.
        reviewers: ``image_id -> number of reviewers wanted``; 2 or more adds
            ``"reviewers_required": n`` to the task's ``data`` (double review, docs/guides/review-routing.md).
        keypoints: ``{category: [keypoint names]}`` of the project.
        masks: categories whose masks are reviewed (``masks: true``). A prediction of one of
            them that has a ``mask`` is sent as a brush region (``{"id": prediction_id,
            "from_name": "brush", "type": "brushlabels", "value": {"format": "rle", "rle":
            [...], "brushlabels": [category]}, ...}``, :func:`labelloop.formats.labelstudio.brush.mask_to_brush_rle`)
            instead of a rectangle: one region per object; its box on import is the mask's
            bounding box. Its EXPORTED_PREDICTIONS row carries the mask.
        tags: the ``level: tag`` categories. Their predictions are image-level pre-labels (score:
            the best box score of the category's prompt, :func:`labelloop.prelabel.protocol.image_level_tags`):
            all of an image's go as one ``choices`` result on the ``tags`` Choices control
            (``{"id": "tags-" + 12 hex of the image_id, "from_name": "tags", "to_name": "image",
            "type": "choices", "value": {"choices": [category, ...]}, "score": lowest tag score}``,
            categories sorted; Label Studio docs, "Import pre-annotated data", Choices), never as a
            rectangle, and get no EXPORTED_PREDICTIONS row (that table holds regions).

    Returns:
        ``(tasks, exported)``: tasks sorted by source_path, each
        ``{"data": {"image", "image_id", "source_path", "batch"}, "predictions": [{"model_version",
        "score", "result"}]}`` where ``score`` is the lowest region score (0.0 without regions) and
        each region is ``{"id": prediction_id, "from_name": "label", "to_name": "image",
        "type": "rectanglelabels", "original_width", "original_height", "image_rotation": 0,
        "value": {x, y, width, height (percent), "rotation": 0, "rectanglelabels": [category]},
        "score"}``; ``exported`` are EXPORTED_PREDICTIONS rows (``region_id = prediction_id``).
    """
    chosen: dict[str | None, ImageRow] = {}
    for img in sorted(images, key=lambda r: (r.get("duplicate_of") is not None, r["source_path"])):
        chosen.setdefault(img["image_id"], img)
    by_image: dict[str, list[PredictionRow]] = {}
    for p in predictions:
        if p["image_id"] in chosen:
            by_image.setdefault(p["image_id"], []).append(p)
    source = f"labelloop/{batch}"
    tasks: list[dict] = []
    exported: list[ExportedPredictionRow] = []
    for img in sorted(chosen.values(), key=lambda r: r["source_path"]):
        # images to send are ok rows: their sha256 and size are known
        assert img["image_id"] is not None and img["width"] is not None and img["height"] is not None
        w, h = int(img["width"]), int(img["height"])
        preds = sorted(by_image.get(img["image_id"], []), key=lambda p: (-float(p["score"]), p["prediction_id"]))
        result: list[dict] = []
        tagged = [p for p in preds if p["category"] in (tags or ())]
        if tagged:
            result.append({"id": "tags-" + img["image_id"][:12], "from_name": TAG_CONTROL, "to_name": OBJECT_NAME,
                           "type": CONTROLS[TAG_CONTROL],
                           "value": {"choices": sorted({p["category"] for p in tagged})},
                           "score": min(float(p["score"]) for p in tagged)})
        for p in preds:
            if p in tagged:
                continue
            as_mask = bool(masks) and p["category"] in (masks or ()) and bool(p.get("mask"))
            value: dict[str, Any]
            if as_mask:
                assert p["mask"] is not None  # as_mask: the prediction has one
                control, rtype = BRUSH_CONTROL, CONTROLS[BRUSH_CONTROL]
                value = {"format": "rle", "rle": mask_to_brush_rle(p["mask"]), "brushlabels": [p["category"]]}
            else:
                control, rtype = CONTROL_NAME, REGION_TYPE
                value = xyxy_to_ls(p["bbox"], w, h) | {"rectanglelabels": [p["category"]]}
            result.append({"id": p["prediction_id"], "from_name": control, "to_name": OBJECT_NAME,
                           "type": rtype, "original_width": w, "original_height": h, "image_rotation": 0,
                           "value": value, "score": float(p["score"])})
            extra: Mapping[str, Any] = p  # keypoints: not a PREDICTIONS column, a caller's row may carry them
            if keypoints and extra.get("keypoints") and p["category"] in keypoints:
                result += ls_keypoint_results(extra["keypoints"], keypoints[p["category"]], p["prediction_id"], w, h,
                                              to_name=OBJECT_NAME, from_name=KEYPOINT_CONTROL)
            exported.append({"source": source, "image_id": img["image_id"], "region_id": p["prediction_id"],
                             "prediction_id": p["prediction_id"], "category": p["category"],
                             "bbox": [float(v) for v in p["bbox"]], "score": float(p["score"]),
                             "model_version": model_version, "mask": p.get("mask") if as_mask else None})
        score = min((float(p["score"]) for p in preds), default=0.0)
        data: dict[str, Any] = {"image": image_reference(img["uri"]), "image_id": img["image_id"],
                "source_path": img["source_path"], "batch": batch}
        n = (reviewers or {}).get(img["image_id"], 1)
        if n and n > 1:
            data["reviewers_required"] = int(n)
        tasks.append({"data": data, "predictions": [{"model_version": model_version, "score": score,
                                                     "result": result}]})
    return tasks, exported
