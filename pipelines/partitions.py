"""Partitions: one dynamic partition per ingest batch (``labelloop ingest`` or the inbox sensor
adds it), and the backfill policy of the per-batch assets."""

import dagster as dg

BATCHES = "batches"
batches = dg.DynamicPartitionsDefinition(name=BATCHES)

# A backfill (or a reprocessing run) of many batches runs up to this many batches per run: each
# per-batch asset is called once with the run's partition range (context.partition_keys) and
# loops over it, so 1,000 stale batches are ~125 runs, not one run per batch or per image.
MAX_BATCHES_PER_RUN = 8
backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_BATCHES_PER_RUN)


def summed(summaries: list[dict], keys: tuple[str, ...]) -> dict:
    """``{key: sum over summaries}`` of the numeric ``keys`` (a multi-batch run's metadata)."""
    return {k: sum(s.get(k) or 0 for s in summaries) for k in keys}
