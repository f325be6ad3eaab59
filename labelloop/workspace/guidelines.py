"""The labeling guidelines of a workspace: ``guidelines.md`` at its root, versioned with the labels.

``labelloop init`` writes a template (:func:`template`): per configured category a definition and
examples, then what not to label, the minimum object size, and the truncation and occlusion
rules (boxes enclose the visible part of an object, as in the PASCAL VOC annotation guidelines,
Everingham et al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 88, 2010, section 3.4,
and COCO's boxes). The team edits it; git versions it with ``labelloop.yaml`` in every release
commit (:func:`labelloop.workspace.versioning.commit_release`).

Its version is the sha256 of the file's bytes (hex, 64 characters; :func:`guidelines_sha256`),
recorded on every review export (``review_out/<batch>/export.json``, each Label Studio task's
``data.guidelines_sha256`` and the review queue rows), on every human label (the guidelines of the
export the review answers), in the release manifest and note, in lineage, and compared by
``labelloop diff``. A workspace without the file (made before it existed, or the file deleted)
records :data:`NO_GUIDELINES` (``"none"``) and warns (:class:`GuidelinesWarning`); nothing fails.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

from labelloop.workspace.config import ProjectConfig

#: The file name of the guidelines at the workspace root.
GUIDELINES_FILE = "guidelines.md"
#: The version recorded when a workspace has no guidelines file.
NO_GUIDELINES = "none"
#: The default minimum object size of the template, in pixels of the shorter box side.
MIN_OBJECT_PX = 10


class GuidelinesWarning(UserWarning):
    """The workspace has no ``guidelines.md`` (or it cannot be read): ``"none"`` is recorded."""


def guidelines_path(root: str | Path) -> Path:
    """``<root>/guidelines.md`` (``root``: the workspace root folder)."""
    return Path(root) / GUIDELINES_FILE


def template(cfg: ProjectConfig) -> str:
    """The Markdown template ``labelloop init`` writes for ``cfg``'s categories (in config order).

    Per category: a definition (from its ``prompt`` when set), examples to fill in, whether masks
    or keypoints are drawn; then what not to label, the minimum object size
    (:data:`MIN_OBJECT_PX` pixels on the shorter side of the box, in the EXIF-corrected image),
    truncation and occlusion (box the visible part; set the occluded / truncated flags), crowds.
    """
    lines = [f"# Labeling guidelines: {cfg.project}", "",
             "Edit this file before the first review and whenever a rule changes: its sha256 is recorded on",
             "every review export, on every human label, in every release note and in `labelloop lineage`,",
             "and `labelloop diff` says when it changed between two releases.", "",
             "Boxes are drawn in pixels of the image as shown (EXIF orientation applied), tight around",
             "the visible part of the object (xyxy: left, top, right, bottom edges).", "",
             "## Categories", ""]
    for c in cfg.categories:
        what = c.prompt or c.name
        lines += [f"### {c.name}", "",
                  f"- Definition: {what}. <!-- say what counts as a {c.name}, and what does not -->",
                  f"- Examples: <!-- typical {c.name} objects, and the borderline cases you decided -->",
                  f"- Draw: a box{' and a mask (brush) of its visible pixels' if c.masks else ''}"
                  + (f"; keypoints {', '.join(c.keypoints)} (only those visible)" if c.keypoints else "") + ".", ""]
    lines += ["## What not to label", "",
              "- Reflections, pictures of an object (posters, screens, photos inside the photo), toys and",
              "  statues, unless the definition above includes them.",
              "- Objects of a class not listed above: leave them unlabeled; do not pick the nearest class.",
              "- A pre-annotation you cannot confirm: delete it rather than guess.", "",
              "## Minimum object size", "",
              f"- Label an object only if its box is at least {MIN_OBJECT_PX} pixels on its shorter side;",
              "  smaller ones are left unlabeled (and a pre-annotation of one is deleted).", "",
              "## Truncation", "",
              "- An object cut by the image border: box the part inside the image and mark it truncated.",
              "", "## Occlusion", "",
              "- An object partly hidden by another: box its visible part only (not the estimated full",
              "  extent) and mark it occluded. Label it if about 20% or more of it is visible and you can",
              "  tell its class; otherwise leave it.",
              "- Several objects of a class too entangled to separate (a crowd): one crowd region, if the",
              "  tool offers it; otherwise box each object you can separate.", ""]
    return "\n".join(lines)


def write_template(root: str | Path, cfg: ProjectConfig) -> bool:
    """Write :func:`template` to ``<root>/guidelines.md`` unless the file exists (it is never
    overwritten). Returns True when written."""
    path = guidelines_path(root)
    if path.exists():
        return False
    path.write_text(template(cfg), encoding="utf-8")
    return True


def read_guidelines_bytes(root: str | Path, warn: bool = True) -> tuple[bytes | None, str]:
    """``(bytes, sha256)`` of ``<root>/guidelines.md`` as stored (the version is the sha256 hex of
    these bytes; a review export copies them unchanged); ``(None, "none")`` when the file is
    missing or unreadable. With ``warn``, a :class:`GuidelinesWarning` names the file when it is
    missing, unreadable, or not UTF-8 text (Label Studio then shows undecodable bytes as U+FFFD).
    Never raises."""
    path = guidelines_path(root)
    try:
        data = path.read_bytes()
    except OSError as exc:
        if warn:
            why = "is missing" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc})"
            warnings.warn(f"{path} {why}: the guidelines version is recorded as {NO_GUIDELINES!r} "
                          "(`labelloop init` writes a template)", GuidelinesWarning, stacklevel=2)
        return None, NO_GUIDELINES
    if warn:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            warnings.warn(f"{path} is not UTF-8 text (byte {exc.start}): its version is the sha256 of its bytes, "
                          "exports copy it unchanged, and Label Studio's instructions show the undecodable bytes "
                          "as U+FFFD; save it as UTF-8", GuidelinesWarning, stacklevel=2)
    return data, hashlib.sha256(data).hexdigest()


def read_guidelines(root: str | Path, warn: bool = True) -> tuple[str | None, str]:
    """``(text, sha256)`` of ``<root>/guidelines.md``: the text (UTF-8, undecodable bytes replaced)
    and the sha256 hex of its bytes; ``(None, "none")`` when the file is missing or unreadable,
    with a :class:`GuidelinesWarning` naming the file (unless ``warn`` is False;
    :func:`read_guidelines_bytes`). Never raises."""
    data, sha = read_guidelines_bytes(root, warn)
    return (None if data is None else data.decode("utf-8", errors="replace")), sha


def guidelines_sha256(root: str | Path, warn: bool = True) -> str:
    """The sha256 hex of ``<root>/guidelines.md``, or ``"none"`` (with a warning) when it is missing."""
    return read_guidelines(root, warn)[1]


def guidelines_html(text: str, sha256: str) -> str:
    """``text`` (the guidelines' Markdown) as the HTML Label Studio shows as a project's
    instructions (its ``expert_instruction`` field, rendered as HTML): CommonMark with tables
    (markdown-it-py), raw HTML off so the file cannot inject markup, then a last line naming the
    version (``guidelines sha256 <hex>``)."""
    from markdown_it import MarkdownIt  # only when a push sets the instructions

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    return body + f"<p><small>labelloop guidelines sha256 {sha256}</small></p>\n"


def short(sha: str | None) -> str:
    """``sha`` shortened to 12 hex digits for one-line output; ``"none"`` / ``"not recorded"`` as is."""
    if not sha:
        return "not recorded"
    return sha[:12] if sha != NO_GUIDELINES else sha
