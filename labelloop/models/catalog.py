"""The catalog: the pre-labeler models a user can get with ``labelloop models pull NAME``.

Each :class:`CatalogEntry` names a Hugging Face Hub model repository and the ``labelloop.yaml``
slot the model fills once pulled into ``<workspace>/models/<name>/``:

===================  ====================================  =========  ==============  ===========
name                 hub repo                              role       spec kind       licence
===================  ====================================  =========  ==============  ===========
grounding-dino-tiny  IDEA-Research/grounding-dino-tiny     detector   grounding-dino  Apache-2.0
owlv2-base           google/owlv2-base-patch16-ensemble    detector   owlv2           Apache-2.0
florence-2-base      florence-community/Florence-2-base    detector   florence-2      MIT
florence-2-large     florence-community/Florence-2-large   detector   florence-2      MIT
sam-vit-base         facebook/sam-vit-base                 segmenter  sam-hf          Apache-2.0
sam-vit-huge         facebook/sam-vit-huge                 segmenter  sam-hf          Apache-2.0
sam2.1-hiera-tiny    facebook/sam2.1-hiera-tiny            segmenter  sam2            Apache-2.0
sam3                 facebook/sam3 (gated)                 sam3       sam3            SAM License
===================  ====================================  =========  ==============  ===========

The Florence-2 entries name the ``florence-community`` repositories, the checkpoints the
``transformers`` Florence-2 documentation loads with ``Florence2ForConditionalGeneration``
(``microsoft/Florence-2-*`` hold the remote-code version, which labelloop never runs).

``spec_kind`` is the ``kind`` of :class:`labelloop.workspace.model_specs.DetectorSpec` /
:class:`~labelloop.workspace.model_specs.SegmenterSpec` (``sam3``: the ``prelabeler.sam3`` slot of
``backend: sam3``, which has no ``kind``) that loads the pulled directory as-is
(a ``save_pretrained`` directory, :func:`labelloop.prelabel.backends.detection.load_pretrained`);
``None`` where no labelloop backend loads that model yet: the pull still downloads, verifies and
records it in the models table, and prints no ``labelloop.yaml`` snippet. The hub's
``facebook/sam-vit-*`` repositories hold ``transformers.SamModel`` directories (segmenter kind
``sam-hf``), not the ``segment-anything`` ``.pth`` files that segmenter kind ``sam`` loads.

``revision`` is ``"main"`` for every entry: the pull resolves it to the commit the hub serves
and records that commit (models table ``revision``), so a later pull of the same commit is
reproducible with ``--revision <commit>``. ``size_bytes`` is the approximate download size (the
safetensors weights plus the small JSON files; PyTorch ``.bin`` / TF / Flax / ONNX duplicates are
not downloaded when safetensors weights exist, :func:`labelloop.models.pull.files_to_fetch`).

Gated repositories (``gated=True``: facebook/sam3) need the user to accept the licence on the
model's hub page, then a token: ``hf auth login`` (stored under ``$HF_HOME``) or ``HF_TOKEN``.

Sources: the model cards at ``https://huggingface.co/<repo>``; Hugging Face Hub docs, "Gated
models" (https://huggingface.co/docs/hub/models-gated) and ``huggingface_hub`` "Authentication"
(https://huggingface.co/docs/huggingface_hub/quick-start#authentication).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

ROLES = ("detector", "segmenter", "sam3")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


class UnknownModelError(KeyError):
    """A name that is neither a catalog name nor an ``org/name`` hub repo id (message lists the catalog)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class CatalogEntry:
    """One model of the catalog (module docstring).

    Fields:

    - ``name``: the catalog name and the folder under ``models/`` (``grounding-dino-tiny``).
    - ``repo_id``: hub model repository (``IDEA-Research/grounding-dino-tiny``).
    - ``revision``: branch, tag or 40-hex commit to pull (``main``).
    - ``role``: ``labelloop.yaml`` slot: ``detector`` | ``segmenter`` | ``sam3``.
    - ``family``: model family (``grounding-dino``, ``owlv2``, ``florence-2``, ``sam``, ``sam2``, ``sam3``).
    - ``spec_kind``: the spec ``kind`` that loads it (``grounding-dino``, ``owlv2``, ``sam2``), or None.
    - ``licence``: the model card's licence.
    - ``size_bytes``: approximate download size in bytes.
    - ``gated``: the hub asks users to accept the licence and sign in before download.
    - ``note``: one line for ``labelloop models list``.
    """

    name: str
    repo_id: str
    revision: str
    role: str
    family: str
    spec_kind: str | None
    licence: str
    size_bytes: int
    gated: bool = False
    note: str = ""

    def as_dict(self) -> dict:
        """The entry as a JSON-ready dict (``labelloop models list --json``)."""
        return asdict(self)


_NO_BACKEND = "no labelloop backend loads it yet (recorded in the models table only)"

CATALOG: dict[str, CatalogEntry] = {e.name: e for e in (
    CatalogEntry("grounding-dino-tiny", "IDEA-Research/grounding-dino-tiny", "main", "detector", "grounding-dino",
                 "grounding-dino", "Apache-2.0", 689_000_000, note="open-vocabulary boxes from text prompts"),
    CatalogEntry("owlv2-base", "google/owlv2-base-patch16-ensemble", "main", "detector", "owlv2", "owlv2",
                 "Apache-2.0", 620_000_000, note="open-vocabulary boxes, fixed 960 px square input"),
    CatalogEntry("florence-2-base", "florence-community/Florence-2-base", "main", "detector", "florence-2",
                 "florence-2", "MIT", 464_000_000,
                 note="<OPEN_VOCABULARY_DETECTION> per category; transformers-native port of microsoft/Florence-2-base"),
    CatalogEntry("florence-2-large", "florence-community/Florence-2-large", "main", "detector", "florence-2",
                 "florence-2", "MIT", 1_540_000_000,
                 note="<OPEN_VOCABULARY_DETECTION> per category; transformers-native port of microsoft/Florence-2-large"),
    CatalogEntry("sam-vit-base", "facebook/sam-vit-base", "main", "segmenter", "sam", "sam-hf", "Apache-2.0",
                 375_000_000, note="transformers SamModel (segmenter kind sam-hf)"),
    CatalogEntry("sam-vit-huge", "facebook/sam-vit-huge", "main", "segmenter", "sam", "sam-hf", "Apache-2.0",
                 2_560_000_000, note="transformers SamModel (segmenter kind sam-hf)"),
    CatalogEntry("sam2.1-hiera-tiny", "facebook/sam2.1-hiera-tiny", "main", "segmenter", "sam2", "sam2",
                 "Apache-2.0", 156_000_000, note="SAM 2.1, image mode"),
    CatalogEntry("sam3", "facebook/sam3", "main", "sam3", "sam3", "sam3", "SAM License", 3_450_000_000, gated=True,
                 note="gated: accept the licence at https://huggingface.co/facebook/sam3, then `hf auth login` "
                      "or set HF_TOKEN; prelabeler.backend sam3"),
)}
"""Every catalog entry by name."""


def is_repo_id(name: str) -> bool:
    """``name`` has the shape of a hub repo id, ``org/name``."""
    return bool(_REPO_ID.fullmatch(name))


def lookup(name: str) -> CatalogEntry:
    """The catalog entry ``name``, or an ad-hoc entry for a hub repo id ``org/name`` (folder name:
    the repo's name, lower-cased; role ``detector``, family ``other``, no spec kind, licence unknown:
    callers override what they know with ``dataclasses.replace``).

    Raises:
        UnknownModelError: ``name`` is neither; the message lists the catalog names.
    """
    if name in CATALOG:
        return CATALOG[name]
    if is_repo_id(name):
        return CatalogEntry(name.split("/")[1].lower(), name, "main", "detector", "other", None, "unknown", 0)
    raise UnknownModelError(f"no model {name!r} in the catalog ({', '.join(CATALOG)}); "
                            "or name a hub repository as org/name")
