"""The DVC repository resource: where releases are pushed (git remote, DVC remote on S3 or a folder)."""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from labelloop.workspace.remotes import ENV_DVC_ENDPOINT, ENV_DVC_REMOTE, ENV_GIT_REMOTE, RemoteSettings


class DvcRepoResource(dg.ConfigurableResource):
    """DVC and git remotes of the workspace, applied before each release and push.

    ``dvc_remote`` (``s3://bucket/prefix`` through dvc-s3, or a folder) becomes the default DVC
    remote ``storage``; ``dvc_endpoint_url`` (S3-compatible servers) is written to
    ``.dvc/config.local``; ``git_remote`` becomes ``origin``. Unset: the workspace keeps what it
    has (by default the local folder remote ``local`` made by ``labelloop init``, no git remote).
    Credentials come from boto3's chain (``AWS_ACCESS_KEY_ID`` ...) or ``.dvc/config.local``.
    ``push``: push data (and commits and tags when ``origin`` exists) after each release.
    """

    push: bool = True
    dvc_remote: str | None = Field(None, description=f"URL of the DVC data remote (env {ENV_DVC_REMOTE})")
    dvc_endpoint_url: str | None = Field(None, description=f"S3 endpoint URL (env {ENV_DVC_ENDPOINT})")
    git_remote: str | None = Field(None, description=f"URL or path of the git remote (env {ENV_GIT_REMOTE})")

    @classmethod
    def from_env(cls) -> "DvcRepoResource":
        """The resource with each remote setting bound to its environment variable (``dg.EnvVar``)
        when that variable is set, so the values are read where the run happens."""
        names = {"dvc_remote": ENV_DVC_REMOTE, "dvc_endpoint_url": ENV_DVC_ENDPOINT, "git_remote": ENV_GIT_REMOTE}
        return cls(**{field: dg.EnvVar(env) for field, env in names.items() if os.environ.get(env)})

    def settings(self) -> RemoteSettings:
        """The :class:`labelloop.workspace.remotes.RemoteSettings` to apply."""
        return RemoteSettings(dvc_url=self.dvc_remote or None, endpoint_url=self.dvc_endpoint_url or None,
                              git_url=self.git_remote or None)
