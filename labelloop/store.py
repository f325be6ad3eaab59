"""Where a workspace keeps its images and tables: a local folder (default) or an S3 prefix.

One code path for both: paths are :class:`pathlib.Path` locally and
:class:`upath.UPath` (universal_pathlib over fsspec / s3fs) on a store URL such as
``s3://bucket/prefix``; both offer the same ``/``, ``glob``, ``rglob``, ``is_file``,
``is_dir``, ``open``, ``read_text``... The few operations POSIX paths and object stores do
differently live here: opening a file for reading, atomic writes and copies.

Configuration (environment, read by :meth:`StoreSettings.from_env`; the Dagster resource
``resources.storage`` binds the same values through ``dg.EnvVar``):

- ``LABELLOOP_STORE_URL`` ``s3://bucket/prefix``: tables live under ``<url>/tables/`` and
  ingested images under ``<url>/inbox/<batch>/``; image rows carry full ``s3://`` URIs. Unset:
  the workspace folder (``<root>/tables``, ``<root>/inbox``), workspace-relative URIs.
- ``LABELLOOP_STORE_ENDPOINT_URL`` (else ``AWS_ENDPOINT_URL``): an S3-compatible server
  (MinIO, moto, Ceph...).
- credentials and region: boto's chain (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_SESSION_TOKEN``, ``AWS_DEFAULT_REGION``, ``~/.aws``...).

Atomicity: on S3 one PUT is atomic (a reader sees the old object or the new one, never part of
one), so a table write is a single PUT of the finished Parquet bytes where the local store
writes a temporary file and renames it; chunked writers still write one object per chunk, so
a crashed run keeps its finished chunks on either store.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ENV_STORE_URL = "LABELLOOP_STORE_URL"
ENV_STORE_ENDPOINT = "LABELLOOP_STORE_ENDPOINT_URL"
REMOTE_SCHEMES = ("s3://", "s3a://", "gs://", "gcs://", "az://", "abfs://", "memory://")
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StoreError(RuntimeError):
    """The store URL is unusable (message names it and the problem)."""


@dataclass(frozen=True)
class StoreSettings:
    """A workspace's image and table store.

    ``url``: ``s3://bucket[/prefix]`` (any fsspec URL with a scheme works the same way), or
    None for the workspace folder. ``endpoint_url``: S3-compatible server; ``key``/``secret``/
    ``region``: explicit credentials (None: boto's default chain).
    """

    url: str | None = None
    endpoint_url: str | None = None
    key: str | None = None
    secret: str | None = None
    region: str | None = None

    @classmethod
    def from_env(cls) -> "StoreSettings":
        """Settings from ``LABELLOOP_STORE_URL`` and ``LABELLOOP_STORE_ENDPOINT_URL`` (else
        ``AWS_ENDPOINT_URL``); credentials stay with boto's chain."""
        url = os.environ.get(ENV_STORE_URL) or None
        endpoint = os.environ.get(ENV_STORE_ENDPOINT) or os.environ.get("AWS_ENDPOINT_URL") or None
        return cls(url=url, endpoint_url=endpoint)

    @property
    def is_remote(self) -> bool:
        return bool(self.url)

    def storage_options(self) -> dict[str, Any]:
        """fsspec (s3fs) options: endpoint, credentials, region, and no listing cache (other
        processes, the sensor and the runs, add objects; a cached listing would miss them)."""
        opts: dict[str, Any] = {"use_listings_cache": False}
        if self.endpoint_url:
            opts["endpoint_url"] = self.endpoint_url
        if self.key:
            opts["key"] = self.key
        if self.secret:
            opts["secret"] = self.secret
        if self.region:
            opts["client_kwargs"] = {"region_name": self.region}
        return opts

    def check_url(self) -> str:
        """The store URL without a trailing ``/``, once it is usable.

        Raises:
            StoreError: no url; a url without a remote scheme (``s3://...``); no bucket; an S3
                bucket name S3 would refuse (3-63 of ``a-z 0-9 . -``, starting and ending with a
                letter or digit; AWS "Bucket naming rules"); whitespace, or an empty path part
                (``//``: the same prefix could then be spelled two ways).
        """
        url = self.url
        if not url or not url.startswith(REMOTE_SCHEMES):
            raise StoreError(f"store URL {url!r}: expected s3://bucket[/prefix] ({ENV_STORE_URL})")
        scheme, rest = url.split("://", 1)
        parts = rest.rstrip("/").split("/")
        if not parts[0] and scheme != "memory":
            raise StoreError(f"store URL {url!r}: no bucket (expected s3://bucket[/prefix], {ENV_STORE_URL})")
        if any(c.isspace() for c in url):
            raise StoreError(f"store URL {url!r}: contains whitespace ({ENV_STORE_URL})")
        if any(not p for p in parts[1:]):
            raise StoreError(f"store URL {url!r}: has an empty path part '//' ({ENV_STORE_URL})")
        if scheme in ("s3", "s3a") and not _S3_BUCKET.match(parts[0]):
            raise StoreError(f"store URL {url!r}: {parts[0]!r} is not a valid S3 bucket name (3-63 characters "
                             f"a-z, 0-9, '.', '-', starting and ending with a letter or digit; {ENV_STORE_URL})")
        return url.rstrip("/")

    def root(self):
        """The store root as a :class:`upath.UPath`.

        Raises:
            StoreError: the url is unusable (:meth:`check_url`).
        """
        url = self.check_url()
        from upath import UPath  # fsspec and s3fs: only for an object-store path

        return UPath(url, **self.storage_options())

    def locate(self, uri: str):
        """``uri`` (``s3://...``) as a :class:`upath.UPath` with this store's options."""
        from upath import UPath  # fsspec and s3fs: only for an object-store path

        return UPath(uri, **self.storage_options())


def is_remote(path: Any) -> bool:
    """True for a store path that is not a local file (an ``s3://`` UPath or URI string)."""
    if isinstance(path, str):
        return path.startswith(REMOTE_SCHEMES)
    if isinstance(path, Path):  # pathlib.Path and universal_pathlib's local PosixUPath
        return False
    return hasattr(path, "protocol") and getattr(path, "protocol", "") not in ("", "file", "local")


def open_binary(path: Any) -> IO[bytes]:
    """Open a local path (str / PathLike) or a store path (UPath) for reading bytes.

    Raises:
        FileNotFoundError: no such file or object (the message names it).
        OSError: it cannot be read.
    """
    if is_remote(path) and not isinstance(path, str):
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise FileNotFoundError(2, "no such object", str(path)) from None
    return open(path, "rb")


def write_bytes_atomic(path: Any, write) -> None:
    """Write a file with ``write(fh)``: locally to a temporary file in the same folder, fsync,
    then ``os.replace`` (readers see the old or the new file); on an object store the bytes are
    assembled in memory first and sent as one PUT (atomic there: readers see the old or the new
    object; a failing ``write`` sends nothing, where a streamed upload would commit a part).

    Raises:
        OSError: the write failed (the temporary file is removed); a full disk (errno ENOSPC)
            names ``path`` and says what to free.
    """
    if is_remote(path):
        buf = io.BytesIO()
        write(buf)
        path.write_bytes(buf.getvalue())
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # as open() would make it (mkstemp makes 0600)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise no_space(path) from None
        raise


def no_space(path: Any) -> OSError:
    """The error a full disk gives when ``path`` was being written: errno ENOSPC, the path, and
    what to do (free space on the disk that holds it; nothing half-written is left in place)."""
    return OSError(errno.ENOSPC, "No space left on device (free space on the disk that holds it; nothing was "
                                 "half-written)", str(path))


def copy_file(src: Any, dest: Any) -> None:
    """Copy one file between any two stores (bytes streamed in 1 MiB chunks)."""
    if not is_remote(src) and not is_remote(dest):
        shutil.copyfile(src, dest)
        return
    with open_binary(src) as fin:
        write_bytes_atomic(dest, lambda fout: shutil.copyfileobj(fin, fout, 1 << 20))


def write_text_atomic(path: Any, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically (:func:`write_bytes_atomic`)."""
    data = text.encode("utf-8")
    write_bytes_atomic(path, lambda fh: fh.write(data))


#: The variable that names failures to act out (:func:`failure_point`).
ENV_FAILURES = "LABELLOOP_FAILURES"


def failure_point(name: str, path: Any = None, root: Any = None) -> None:
    """A named moment where a process can die or a disk can fill, acted out when the variable
    ``LABELLOOP_FAILURES`` names it; nothing otherwise (the crash-recovery tests use it).

    ``LABELLOOP_FAILURES`` lists ``name=action`` pairs, comma-separated; action is ``kill`` (SIGKILL
    of this process), ``killpg`` (SIGKILL of its whole process group, as an out-of-memory kill or a
    power loss takes a git child with it), ``killpg+<file>`` (the same after creating ``<file>``
    under ``root``, e.g. the ``.git/index.lock`` a killed git leaves) or ``enospc`` (raise
    ``OSError`` ENOSPC naming ``path``).

    Raises:
        OSError: errno ENOSPC, for action ``enospc``.
    """
    spec = os.environ.get(ENV_FAILURES)
    if not spec:
        return
    actions = dict(item.split("=", 1) for item in spec.split(",") if "=" in item)
    action = actions.get(name)
    if action is None:
        return
    if action.startswith("killpg+") and root is not None:
        Path(root, action.removeprefix("killpg+")).touch()
        action = "killpg"
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "killpg":
        os.killpg(os.getpgid(0), signal.SIGKILL)
    elif action == "enospc":
        raise no_space(path if path is not None else name)
