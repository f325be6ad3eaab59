"""Session fixtures shared by every test directory: the live servers are started once per run."""

from support.label_studio import label_studio  # noqa: F401  (a real Label Studio 1.23 server on loopback)
from support.moto_server import moto_server  # noqa: F401  (moto's S3 server on loopback)
