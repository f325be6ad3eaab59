"""Dagster assets of labelloop, one module per stage. Thin: they call ``labelloop`` and add
metadata; images never pass through an IO manager (tables carry their URIs)."""

import warnings

import dagster as dg

# The per-batch assets take a BackfillPolicy (one run per range of batches, pipelines/partitions.py),
# a parameter Dagster 1.13 marks beta: said once here, not on every import of every asset module.
warnings.filterwarnings("ignore", message=r".*`backfill_policy`.*", category=dg.BetaWarning)
