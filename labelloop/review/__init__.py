"""The review round trip: what goes to review tools and what comes back.

- :mod:`~labelloop.review.export`: the ``review_export`` stage (Label Studio and CVAT files);
- :mod:`~labelloop.review.gold`: gold sets and the honeypots mixed into exports;
- :mod:`~labelloop.review.inbox`, :mod:`~labelloop.review.files`: the review inbox and its files;
- :mod:`~labelloop.review.importer`, :mod:`~labelloop.review.matching`,
  :mod:`~labelloop.review.regions`: review records into REVIEWS / HUMAN_LABELS / REJECTS rows;
- :mod:`~labelloop.review.store`: the append-only review store;
- :mod:`~labelloop.review.resolve`: the ``labels`` stage, a human's review wins over the model;
- :mod:`~labelloop.review.live`: a live Label Studio server (push, pull, webhook).
"""

from labelloop.review.export import export_batch
from labelloop.review.gold import GoldError, register_gold
from labelloop.review.importer import import_file, import_inbox, pending_inbox_files, register_export
from labelloop.review.inbox import inbox_files
from labelloop.review.resolve import resolve_workspace
from labelloop.review.store import ReviewStore, review_store

__all__ = ["GoldError", "ReviewStore", "export_batch", "import_file", "import_inbox", "inbox_files",
           "pending_inbox_files", "register_export", "register_gold", "resolve_workspace", "review_store"]
