"""Where images and tables live: a workspace folder (embedded default)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from labelloop.workspace import Workspace


class WorkspaceResource(dg.ConfigurableResource):
    """The labelloop workspace (a git + DVC repository folder) holding images and tables.

    Images never pass through an IO manager: tables carry workspace-relative URIs.
    """

    root: str = Field(description="absolute path of the workspace root (LABELLOOP_WORKSPACE)")

    def workspace(self) -> Workspace:
        """The :class:`labelloop.workspace.Workspace`; raises WorkspaceError if not initialized."""
        return Workspace.at(self.root).require()
