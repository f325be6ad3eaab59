"""Dagster ConfigurableResources of labelloop: storage (the workspace; images and tables in its
folder or on S3), the pre-labeler, the DVC repository and the review tool."""

from resources.dvc import DvcRepoResource
from resources.prelabeler import PreLabelerResource
from resources.review_tool import LabelStudioFilesResource, LabelStudioServerResource
from resources.storage import WorkspaceResource

__all__ = ["DvcRepoResource", "LabelStudioFilesResource", "LabelStudioServerResource", "PreLabelerResource", "WorkspaceResource"]
