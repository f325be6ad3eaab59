"""Models a workspace can use: the catalog of supported checkpoints (:mod:`~labelloop.models.catalog`),
downloads with sha256 verification (:mod:`~labelloop.models.pull`), the checkpoint hash
(:mod:`~labelloop.models.hashing`), and THE models table (:mod:`~labelloop.models.registry`:
every pulled or trained model, its path, sha256, source, licence and status).

Nothing here imports torch or transformers; ``huggingface_hub`` is imported only when a hub model
is pulled.
"""

from labelloop.models.hashing import sha256_path
from labelloop.models.registry import (
    ModelRegistryError,
    current_model,
    get_model,
    models_dir,
    new_row,
    read_models,
    set_current,
    update_model,
    upsert_model,
)

__all__ = ["ModelRegistryError", "current_model", "get_model", "models_dir", "new_row", "read_models",
           "set_current", "sha256_path", "update_model", "upsert_model"]
