"""push_job: send the releases to the workspace's remotes (DVC data, then git commits and tags)."""

import dagster as dg

from labelloop.workspace import remotes
from resources.dvc import DvcRepoResource
from resources.storage import WorkspaceResource


class PushConfig(dg.Config):
    """What to push: the data (DVC) and/or the commits and tags (git; default: when origin exists)."""

    data: bool = True
    git: bool | None = None


@dg.op(pool="dvc")
def push_releases(context: dg.OpExecutionContext, config: PushConfig, storage: WorkspaceResource,
                  dvc: DvcRepoResource) -> dict:
    """Apply the remote settings, then push the data of every release tag to the default DVC
    remote and the branch and tags to the git remote (labelloop.workspace.remotes.push)."""
    ws = storage.workspace()
    with ws.lock():
        remotes.configure(ws.root, dvc.settings())
        out = remotes.push(ws.root, data=config.data, code=config.git)
    context.log.info(f"pushed data to {out['dvc_url']}" + (f", commits and tags to {out['git_remote']}"
                                                           if out["git_remote"] else ""))
    context.add_output_metadata({"dvc_remote": out["dvc_url"] or "", "git_remote": out["git_remote"] or "",
                                 "tags": dg.MetadataValue.json(out["tags"])})
    return out


@dg.job(description="Push releases: DVC data to the data remote, then commits and dataset-vN tags to git.")
def push_job():
    push_releases()
