"""The embedded CPU pre-labeler: OpenCV 4's bundled classical detectors plus GrabCut masks.

This is a classical stand-in so the loop runs anywhere with no download, not a foundation
model. Weights ship inside the installed ``opencv-python-headless`` wheel:

- ``opencv-hog-person``: Dalal & Triggs HOG + linear SVM people detector
  (``cv2.HOGDescriptor_getDefaultPeopleDetector``; CVPR 2005), 64x128 window.
- ``opencv-haar-<name>``: Viola-Jones Haar cascades from ``cv2.data.haarcascades``
  (e.g. ``haarcascade_frontalface_default.xml``, ``haarcascade_frontalcatface.xml``).

Scores are mapped into [0, 1] by a logistic function of the detector's own confidence:
``score = 1 / (1 + exp(-(w - c) / s))``, where ``w`` is the HOG SVM margin (``c = 0.5, s = 0.5``)
or the Haar cascade's last-stage level weight from ``detectMultiScale3`` (``c = 2.0, s = 1.5``).
``c`` is the weight at which a detection is a coin flip on the bundled photos; the rule is
monotone, so thresholds order detections as the detector does.

Masks (categories configured with ``masks: true``): GrabCut (Rother et al., SIGGRAPH 2004,
``cv2.grabCut`` initialised with the box) on the image downscaled to ``max_side``, upsampled
with nearest-neighbour, clipped to the box, stored as COCO RLE. OpenCV's RNG is seeded per
call so masks are reproducible.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Sequence

import cv2
import cv2.data  # the cascades' folder (a submodule cv2's stubs leave out)
import numpy as np
from PIL import Image

from labelloop.geometry.masks import encode_rle
from labelloop.prelabel.protocol import Detection, model_id_for
from labelloop.workspace.config import ProjectConfig

BACKEND = "opencv-classic"
HOG_PERSON = "opencv-hog-person"
NMS_IOU = 0.45
MIN_SCORE = 0.05  # detections below this are not recorded at all
# Below these sizes (after downscaling) a detector is not run: HOGDescriptor.detectMultiScale
# crashes the process (heap corruption) on images smaller than its window plus padding, and a
# cascade's smallest window is 24 px. Such images get no prediction and go to human review.
HOG_MIN_SIZE = (64 + 16, 128 + 16)
HAAR_MIN_SIDE = 24


class DetectorNotFound(FileNotFoundError):
    """A configured detector's weights file is not where the installed OpenCV ships it."""


def _logistic(w: float, centre: float, scale: float) -> float:
    return 1.0 / (1.0 + math.exp(-(w - centre) / scale))


def cascade_path(detector: str) -> Path:
    """Path of the Haar cascade for ``opencv-haar-<name>`` (``haarcascade_<name>.xml``).

    Raises:
        DetectorNotFound: no such file in ``cv2.data.haarcascades`` (names the expected path).
    """
    name = detector.removeprefix("opencv-haar-")
    path = Path(cv2.data.haarcascades) / f"haarcascade_{name}.xml"
    if not path.is_file():
        raise DetectorNotFound(
            f"detector {detector!r} needs {path}, which is missing (opencv-python-headless<5 ships the cascades)"
        )
    return path


class OpenCVPreLabeler:
    """Classical CPU pre-labeler for the categories of a :class:`~labelloop.workspace.config.ProjectConfig`.

    ``predict`` takes RGB PIL images and returns :class:`~labelloop.prelabel.protocol.Detection` lists with boxes in the
    input image's pixels. ``model_id`` = backend + sha256 of the weight files + hash of the
    settings (detectors per category, NMS, max_side, GrabCut iterations, mask categories).

    Raises:
        DetectorNotFound: a configured detector's weights are missing.
        ValueError: a category names a detector this backend does not know.
    """

    device = "cpu"

    def __init__(self, config: ProjectConfig):
        self.max_side = config.prelabeler.max_side
        self.grabcut_iterations = config.prelabeler.grabcut_iterations
        # tag categories (image-level labels) need no detector and get no pre-label from this backend
        self.categories = [(c.name, c.detector or "", c.masks, c.prompt or c.name)
                           for c in config.located_categories()]
        digest = hashlib.sha256()
        self._cascades: dict[str, cv2.CascadeClassifier] = {}
        self._hog: cv2.HOGDescriptor | None = None
        for name, detector, _, _ in self.categories:
            if detector == HOG_PERSON:
                if self._hog is None:
                    self._hog = cv2.HOGDescriptor()
                    coef = np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector())  # an ndarray already
                    self._hog.setSVMDetector(coef)
                    digest.update(np.asarray(coef, dtype=np.float32).tobytes())
            elif detector.startswith("opencv-haar-"):
                path = cascade_path(detector)
                if detector not in self._cascades:
                    clf = cv2.CascadeClassifier(str(path))
                    if clf.empty():
                        raise DetectorNotFound(f"{path}: OpenCV could not load this cascade")
                    self._cascades[detector] = clf
                    digest.update(path.read_bytes())
            else:
                raise ValueError(
                    f"labelloop.yaml: categories[{[c[0] for c in self.categories].index(name)}].detector: "
                    f"category {name!r}: detector {detector!r} is not an opencv backend detector "
                    f"(use {HOG_PERSON} or opencv-haar-<cascade>, e.g. opencv-haar-frontalface_default)"
                )
        self.checkpoint_sha256 = digest.hexdigest()
        settings = {
            "categories": self.categories,
            "nms_iou": NMS_IOU,
            "min_score": MIN_SCORE,
            "max_side": self.max_side,
            "grabcut_iterations": self.grabcut_iterations,
            "opencv": cv2.__version__,
        }
        self.model_id = model_id_for(BACKEND, self.checkpoint_sha256, settings)

    # ---- detection -----------------------------------------------------------------------
    def _detect(self, detector: str, gray: np.ndarray, bgr: np.ndarray) -> list[tuple[list[float], float]]:
        h, w = gray.shape[:2]
        if detector == HOG_PERSON and (w < HOG_MIN_SIZE[0] or h < HOG_MIN_SIZE[1]):
            return []  # smaller than the 64x128 window + padding: OpenCV's HOG corrupts memory on it
        if w < HAAR_MIN_SIDE or h < HAAR_MIN_SIDE:
            return []
        if detector == HOG_PERSON:
            assert self._hog is not None  # made in __init__ for a HOG_PERSON category
            rects, weights = self._hog.detectMultiScale(bgr, winStride=(8, 8), padding=(8, 8), scale=1.05)
            return [
                ([float(x), float(y), float(x + w), float(y + h)], _logistic(float(s), 0.5, 0.5))
                for (x, y, w, h), s in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1))
            ]
        clf = self._cascades[detector]
        min_size = max(24, min(gray.shape) // 20)
        rects, _levels, weights = clf.detectMultiScale3(
            gray, scaleFactor=1.1, minNeighbors=4, minSize=(min_size, min_size), outputRejectLevels=True
        )
        return [
            ([float(x), float(y), float(x + w), float(y + h)], _logistic(float(s), 2.0, 1.5))
            for (x, y, w, h), s in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1))
        ]

    def _grabcut(self, bgr: np.ndarray, box: list[float]) -> np.ndarray:
        h, w = bgr.shape[:2]
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(w, x1), min(h, y1)
        mask = np.zeros((h, w), np.uint8)
        if x1 - x0 < 4 or y1 - y0 < 4:
            mask[y0:y1, x0:x1] = 1
            return mask
        gc = np.zeros((h, w), np.uint8)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)
        try:
            cv2.grabCut(bgr, gc, (x0, y0, x1 - x0, y1 - y0), bgd, fgd, self.grabcut_iterations, cv2.GC_INIT_WITH_RECT)
            mask = np.isin(gc, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
        except cv2.error:
            mask[y0:y1, x0:x1] = 1  # degenerate colour model: the box itself
        if mask.sum() == 0:
            mask[y0:y1, x0:x1] = 1
        return mask

    def predict_one(self, image: Image.Image) -> list[Detection]:
        """Detections for one RGB image, boxes in its own pixels, sorted by category then score."""
        rgb = np.asarray(image.convert("RGB"))
        H, W = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(H, W))
        small = cv2.resize(rgb, (max(1, round(W * scale)), max(1, round(H * scale))), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        out: list[Detection] = []
        for name, detector, masks, prompt in self.categories:
            found = [(b, s) for b, s in self._detect(detector, gray, bgr) if s >= MIN_SCORE]
            if not found:
                continue
            xywh = [[b[0], b[1], b[2] - b[0], b[3] - b[1]] for b, _ in found]
            keep = cv2.dnn.NMSBoxes(xywh, [s for _, s in found], MIN_SCORE, NMS_IOU)
            for i in sorted(np.asarray(keep).reshape(-1).tolist(), key=lambda i: -found[i][1]):
                b, s = found[i]
                small_box = [min(max(b[0], 0), bgr.shape[1]), min(max(b[1], 0), bgr.shape[0]),
                             min(max(b[2], 0), bgr.shape[1]), min(max(b[3], 0), bgr.shape[0])]
                box = tuple(round(v / scale, 3) for v in small_box)
                if box[2] - box[0] <= 0 or box[3] - box[1] <= 0:
                    continue
                rle = None
                if masks:
                    m = self._grabcut(bgr, small_box)
                    if scale < 1:
                        m = cv2.resize(m, (W, H), interpolation=cv2.INTER_NEAREST)
                    clipped = np.zeros_like(m)
                    x0, y0, x1, y1 = (int(round(v)) for v in box)
                    clipped[y0:y1, x0:x1] = m[y0:y1, x0:x1]
                    rle = encode_rle(clipped)
                out.append(Detection(name, box, round(float(s), 6), prompt, rle))
        return out

    def predict(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        """One detection list per RGB image (see :meth:`predict_one`)."""
        return [self.predict_one(im) for im in images]
