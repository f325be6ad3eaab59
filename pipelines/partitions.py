"""Partitions: one dynamic partition per ingest batch (``labelloop ingest`` or the inbox sensor
adds it)."""

import dagster as dg

BATCHES = "batches"
batches = dg.DynamicPartitionsDefinition(name=BATCHES)
