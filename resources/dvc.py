"""The DVC repository resource: releases and rollbacks of a workspace, under its lock."""

from __future__ import annotations

import dagster as dg


class DvcRepoResource(dg.ConfigurableResource):
    """DVC settings of the workspace. ``remote`` names the DVC remote pushed to at release
    (``local``: the folder ``.labelloop/dvc-remote`` made by ``labelloop init``)."""

    remote: str = "local"
    push: bool = True
