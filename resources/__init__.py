"""Dagster ConfigurableResources of labelloop, one module each: storage (the workspace; images
and tables in its folder or on S3, :mod:`~resources.storage`), the pre-labeler
(:mod:`~resources.prelabeler`), the DVC repository (:mod:`~resources.dvc`) and the review tool
(:mod:`~resources.review_tool`). Nothing is imported here, so a command that needs one resource
does not load the others (dagster-aws alone takes over a second)."""

__all__ = ["dvc", "prelabeler", "review_tool", "storage"]
