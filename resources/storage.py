"""Where images and tables live: the workspace folder (embedded default) or an S3 prefix through
dagster-aws's :class:`~dagster_aws.s3.S3Resource`."""

from __future__ import annotations

import os

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from labelloop.store import ENV_STORE_ENDPOINT, ENV_STORE_URL, StoreSettings
from labelloop.workspace.layout import Workspace

# S3Resource field -> environment variable bound to it (dg.EnvVar) when that variable is set
S3_ENV = {"endpoint_url": ENV_STORE_ENDPOINT, "aws_access_key_id": "AWS_ACCESS_KEY_ID",
          "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY", "aws_session_token": "AWS_SESSION_TOKEN",
          "region_name": "AWS_DEFAULT_REGION"}


class WorkspaceResource(dg.ConfigurableResource):
    """The labelloop workspace (a git + DVC repository folder) and its image and table store.

    Images never pass through an IO manager: tables carry their URIs (workspace-relative
    locally, ``s3://...`` on S3). ``store_url`` unset: images and tables are folders of the
    workspace. ``store_url = s3://bucket/prefix``: tables under ``<prefix>/tables/``, ingested
    images under ``<prefix>/inbox/<batch>/`` (:mod:`labelloop.store`); ``s3`` (dagster-aws's
    S3Resource) gives the endpoint, region and credentials, both to fsspec/s3fs (tables, images)
    and to the boto3 client of :func:`pipelines.s3_sensors.s3_inbox_sensor`. Unset S3Resource
    fields fall back to boto's chain (AWS_* variables, ~/.aws).
    """

    root: str = Field(description="absolute path of the workspace root (LABELLOOP_WORKSPACE)")
    store_url: str | None = Field(None, description=f"s3://bucket/prefix of images and tables (env {ENV_STORE_URL}); "
                                                    "unset: the workspace folder")
    s3: S3Resource | None = Field(None, description="endpoint, region and credentials of the store (S3 only)")

    def store(self) -> StoreSettings:
        """The :class:`labelloop.store.StoreSettings` of this configuration."""
        if not self.store_url:
            return StoreSettings()
        s3 = self.s3 or S3Resource()
        return StoreSettings(url=self.store_url, endpoint_url=s3.endpoint_url or None,
                             key=s3.aws_access_key_id or None, secret=s3.aws_secret_access_key or None,
                             region=s3.region_name or None)

    def at(self) -> Workspace:
        """The :class:`labelloop.workspace.layout.Workspace`, initialized or not (sensors check)."""
        return Workspace.at(self.root, self.store())

    def workspace(self) -> Workspace:
        """The :class:`labelloop.workspace.layout.Workspace`; raises WorkspaceError if not initialized."""
        return self.at().require()

    def s3_client(self):
        """boto3 S3 client of the store (``S3Resource.get_client``)."""
        return (self.s3 or S3Resource()).get_client()


def storage_resource_from_env(root: str) -> WorkspaceResource:
    """The storage resource for the workspace at ``root``: the S3 store when
    ``LABELLOOP_STORE_URL`` is set (it and the S3 settings bound through ``dg.EnvVar``:
    ``LABELLOOP_STORE_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``, each only when set), else the workspace folder."""
    if not os.environ.get(ENV_STORE_URL):
        return WorkspaceResource(root=root)
    s3 = S3Resource(**{field: dg.EnvVar(env) for field, env in S3_ENV.items() if os.environ.get(env)})
    return WorkspaceResource(root=root, store_url=dg.EnvVar(ENV_STORE_URL), s3=s3)
