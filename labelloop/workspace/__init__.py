"""A workspace: one labeling project in a directory that is its own git + DVC repository.

- :mod:`~labelloop.workspace.layout`: the :class:`~labelloop.workspace.layout.Workspace` and its folders, batch names, locks;
- :mod:`~labelloop.workspace.config` and :mod:`~labelloop.workspace.model_specs`: ``labelloop.yaml``;
- :mod:`~labelloop.workspace.init`: ``labelloop init``;
- :mod:`~labelloop.workspace.versioning` and :mod:`~labelloop.workspace.remotes`: git + DVC,
  release tags, rollback, remotes and push;
- :mod:`~labelloop.workspace.repo`: every table's path, read and write.
"""

from labelloop.workspace.config import ConfigError, ProjectConfig, load_config
from labelloop.workspace.init import init_workspace
from labelloop.workspace.layout import ENV_WORKSPACE, Workspace, WorkspaceError, check_batch_name
from labelloop.workspace.versioning import VersioningError

__all__ = ["ENV_WORKSPACE", "ConfigError", "ProjectConfig", "VersioningError", "Workspace", "WorkspaceError",
           "check_batch_name", "init_workspace", "load_config"]
