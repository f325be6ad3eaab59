"""Dagster assets of labelloop, one module per stage. Thin: they call ``labelloop`` and add
metadata; images never pass through an IO manager (tables carry their URIs)."""
