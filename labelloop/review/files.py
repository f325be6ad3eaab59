"""One reader for every review file dropped in the review inbox: Label Studio JSON / JSON-MIN,
CVAT for images 1.1 XML (or CVAT's export zip holding ``annotations.xml``), COCO JSON (or a zip
holding one ``*.json``), a YOLO dataset zip (Ultralytics' layout or Label Studio's YOLO export,
:mod:`labelloop.formats.yolo.reader`).

The format is read from the content, not the name: a zip holding ``labels/**.txt`` beside
``data.yaml`` or ``classes.txt`` (at its top or in one folder) -> YOLO, checked first (Label
Studio's YOLO zip also holds ``notes.json``, which is no COCO file); XML -> CVAT; a JSON list ->
Label Studio; a JSON object with ``images`` and ``annotations`` -> COCO. The size is checked before anything
is read (a zip's members by their declared uncompressed size too), so a 1 GB file is refused
with a clear message instead of exhausting memory. Whatever is wrong with the file as a whole
raises :class:`labelloop.formats.labelstudio.reader.ExportFormatError` (message: the file and the problem);
problems of single tasks / images are carried on their records.

A damaged zip (a CRC error, a corrupt deflate stream, an encrypted member, a compression method
zipfile does not implement, a directory entry whose size disagrees with the member) is such a
file error too, one line naming the zip and its member: whatever ``zipfile`` or ``zlib`` raise
while reading is turned into :class:`~labelloop.formats.labelstudio.reader.ExportFormatError`,
never passed on.

A Label Studio export (a JSON list) is streamed task by task
(:func:`labelloop.formats.labelstudio.reader.stream_export`, ``ijson``) instead of being loaded
whole: :func:`open_review_file` hands its records out while the file is read, so memory holds
one task at a time (plus what the caller keeps). CVAT XML and COCO JSON are read whole (within
``review.max_export_mb``).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from labelloop.formats import coco, cvat, labelstudio, yolo
from labelloop.formats.labelstudio import ExportFormatError, ExportTooLarge, check_size
from labelloop.formats.labelstudio.reader import ExportStream, stream_export
from labelloop.formats.records import ReviewFile, ReviewRecord, default_source

FORMATS = (labelstudio.TOOL, cvat.TOOL, coco.TOOL, yolo.TOOL)  # the ``format`` of a ReviewFile


# What zipfile / zlib raise on a damaged archive or member (zlib.error: a corrupt deflate stream;
# RuntimeError: an encrypted member; NotImplementedError, a RuntimeError: an unknown compression
# method; EOFError: a truncated stream; BadZipFile: a bad CRC or header; struct.error, ValueError,
# OSError: a header that points past the file).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, RuntimeError, EOFError, struct.error,
               ValueError, OSError)
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma"}


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{lines[0].strip() if lines else ''} ({type(exc).__name__})".lstrip()


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, max_bytes: int | None) -> bytes:
    """One member's bytes, checked: not encrypted, a known compression method, within ``max_bytes``
    (declared and read), as long as the zip's directory says; else ExportFormatError / ExportTooLarge."""
    damaged = f"{path}: damaged zip: {info.filename}"
    if info.flag_bits & 0x1:
        raise ExportFormatError(f"{damaged} is encrypted (password-protected members are not read); export "
                                "it again without a password")
    if info.compress_type not in _ZIP_METHODS:
        raise ExportFormatError(f"{damaged} uses compression method {info.compress_type}, not one of "
                                f"{', '.join(_ZIP_METHODS.values())}")
    if max_bytes is not None and info.file_size > max_bytes:
        raise ExportTooLarge(f"{path}: {info.filename} unpacks to {info.file_size / 2**20:.1f} MiB, over the "
                             f"{max_bytes / 2**20:.1f} MiB limit for a review export (review.max_export_mb)")
    try:
        with zf.open(info) as fh:
            data = fh.read(max_bytes + 1 if max_bytes is not None else -1)
    except _ZIP_ERRORS as exc:
        raise ExportFormatError(f"{damaged}: {_reason(exc)}") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise ExportTooLarge(f"{path}: {info.filename} unpacks to more than the {max_bytes / 2**20:.1f} MiB limit")
    if len(data) != info.file_size:
        raise ExportFormatError(f"{damaged}: the zip's directory says {info.file_size} bytes, the member "
                                f"holds {len(data)}")
    return data


def _yolo_archive(zf: zipfile.ZipFile, names: list[zipfile.ZipInfo], path: Path,
                  max_bytes: int | None) -> yolo.YoloArchive | None:
    """The zip as a YOLO dataset (:func:`labelloop.formats.yolo.reader.read_archive`), or None when
    it is not one. The members read (class files, label files) count together against
    ``max_bytes``; images are listed, never read."""
    by_name = {i.filename: i for i in names}
    left = [max_bytes]

    def read(name: str) -> bytes:
        data = _read_member(zf, by_name[name], path, left[0])
        if left[0] is not None:
            left[0] -= len(data)
        return data

    try:
        return yolo.read_archive([(i.filename, i.date_time) for i in names], read)
    except ExportTooLarge:
        raise ExportTooLarge(f"{path}: its YOLO label files unpack to more than the "
                             f"{(max_bytes or 0) / 2**20:.1f} MiB limit for a review export (review.max_export_mb)") \
            from None


def _from_zip(path: Path, max_bytes: int | None) -> tuple[bytes, str] | yolo.YoloArchive:
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as exc:
        raise ExportFormatError(f"{path}: not a valid zip file: {_reason(exc)}") from None
    with zf:
        names = [i for i in zf.infolist() if not i.is_dir()]
        dataset = _yolo_archive(zf, names, path, max_bytes)
        if dataset is not None:
            return dataset
        xml = [i for i in names if i.filename.rsplit("/", 1)[-1] == "annotations.xml"]
        js = [i for i in names if i.filename.lower().endswith(".json")]
        pick = xml or js
        if len(pick) != 1:
            raise ExportFormatError(f"{path}: a review zip must hold one annotations.xml (CVAT), one *.json "
                                    f"(COCO) or a YOLO dataset (labels/**.txt beside data.yaml or classes.txt); "
                                    f"found {[i.filename for i in pick] or 'none of them'}")
        return _read_member(zf, pick[0], path, max_bytes), pick[0].filename


class ReviewStream:
    """A review file opened by :func:`open_review_file`.

    ``format``: the tool whose format it is (``label-studio``, ``cvat``, ``coco``, ``yolo``); ``records``:
    its :class:`~labelloop.formats.records.ReviewRecord` s, to iterate once (a Label Studio export
    yields them while the file is read, and raises
    :class:`~labelloop.formats.labelstudio.reader.ExportFormatError` mid-way when the file turns out
    malformed); :meth:`default_source`; :meth:`close` (a stream's file is otherwise closed when
    its records end).
    """

    def __init__(self, fmt: str, records: Iterable[ReviewRecord], container: str | None, path: Path,
                 inbox: Path | None, stream: ExportStream | None = None, fh: BinaryIO | None = None):
        self.format = fmt
        self.records = records
        self._container = container
        self._path = path
        self._inbox = inbox
        self._stream = stream
        self._fh = fh

    @property
    def container(self) -> str | None:
        """The tool's container the file names (``project-7``, ``task-12``), or None; for a
        Label Studio stream, from the records read so far (:meth:`peek` first)."""
        return self._stream.container if self._stream is not None else self._container

    def peek(self) -> None:
        """Read a Label Studio stream up to its first record, so :attr:`container` and
        :meth:`default_source` are known before the records are used (no-op for other formats).

        Raises:
            ExportFormatError: the file is malformed before its first record.
        """
        if self._stream is not None:
            self._stream.peek()

    def default_source(self) -> str:
        """:func:`labelloop.formats.records.default_source` of the file (its container as far as known)."""
        return default_source(self.format, self._path, self.container, self._inbox)

    def close(self) -> None:
        """Close the file of a Label Studio stream not read to its end (no-op otherwise)."""
        close = getattr(self.records, "close", None)
        if close is not None:
            close()
        if self._fh is not None:
            self._fh.close()


def _sniff(fh: BinaryIO) -> bytes:
    """The first non-blank byte of ``fh`` after a UTF-8 BOM (``b""`` for none); ``fh`` rewound."""
    first, start = b"", True
    while not first:
        chunk = fh.read(65536)
        if not chunk:
            break
        if start and chunk.startswith(b"\xef\xbb\xbf"):
            chunk = chunk[3:]
        first, start = chunk.lstrip()[:1], False
    fh.seek(0)
    return first


class _ClosingRecords:
    """The records of a Label Studio stream; its file is closed when they end, when reading them
    fails, or on :meth:`close` (even before the first record was asked for)."""

    def __init__(self, stream: ExportStream, fh: BinaryIO):
        self._records: Iterator[ReviewRecord] = iter(stream)
        self._fh = fh

    def __iter__(self) -> Iterator[ReviewRecord]:
        return self

    def __next__(self) -> ReviewRecord:
        try:
            return next(self._records)
        except BaseException:  # StopIteration included: the file is done with
            self._fh.close()
            raise

    def close(self) -> None:
        self._fh.close()


def open_review_file(path: str | os.PathLike, *, max_bytes: int | None = labelstudio.DEFAULT_MAX_EXPORT_BYTES,
                     keypoints: dict[str, list[str]] | None = None, inbox: Path | None = None) -> ReviewStream:
    """Open one review file and hand out its records while it is read (the arguments and the
    version time are those of :func:`read_review_file`).

    A file (or zip member) whose content starts with ``[`` is a Label Studio export: it is
    streamed (:func:`labelloop.formats.labelstudio.reader.stream_export`), its file staying open
    until the records end (or their generator is closed). XML (CVAT), other JSON (COCO) and a YOLO
    dataset zip (:mod:`labelloop.formats.yolo.reader`: its label files, within ``max_bytes``
    together) are parsed whole here.

    Returns:
        :class:`ReviewStream` (``format``, ``records`` to iterate once, ``default_source()``).

    Raises:
        ExportFormatError (ExportTooLarge): here, the file as a whole is not a review export, is
            too large or is a damaged zip; while iterating a Label Studio export, malformed JSON
            or items (keep nothing of such a file).
        OSError: the file cannot be read.
    """
    path = Path(path)
    check_size(path, max_bytes)
    mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).isoformat()
    if zipfile.is_zipfile(path):
        got = _from_zip(path, max_bytes)
        if isinstance(got, yolo.YoloArchive):
            try:
                parsed = yolo.parse(got, where=str(path), fallback_time=mtime, keypoints=keypoints)
            except ValueError as exc:  # YoloFormatError
                raise ExportFormatError(str(exc)) from None
            return ReviewStream(parsed["tool"], parsed["records"], parsed["container"], path, inbox)
        data, member = got
        where = f"{path}!{member}"
        fh: BinaryIO = io.BytesIO(data)
    else:
        where = str(path)
        fh = open(path, "rb")  # noqa: SIM115 - a Label Studio stream keeps it open until its records end
    try:
        if _sniff(fh) == b"[":
            stream = stream_export(fh, where=where)
            return ReviewStream(labelstudio.TOOL, _ClosingRecords(stream, fh), None, path, inbox, stream, fh)
        data = fh.read(max_bytes + 1 if max_bytes is not None else -1)
    except BaseException:
        fh.close()
        raise
    fh.close()
    if max_bytes is not None and len(data) > max_bytes:
        raise ExportTooLarge(f"{where}: grew over the {max_bytes / 2**20:.1f} MiB limit while it was read")
    content: object = data
    if not cvat.looks_like(data):
        try:
            content = json.loads(data.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise ExportFormatError(f"{where}: not UTF-8 text ({exc})") from None
        except json.JSONDecodeError as exc:
            raise ExportFormatError(f"{where}: not valid JSON (nor XML) ({exc})") from None
        except RecursionError:
            raise ExportFormatError(f"{where}: JSON nested too deeply to be a review export") from None
    for reader in (cvat, coco, labelstudio):
        if reader.looks_like(content):
            try:
                parsed = reader.parse(content, where=where, fallback_time=mtime, keypoints=keypoints)
            except ValueError as exc:  # CvatFormatError, CocoFormatError, ExportFormatError
                raise ExportFormatError(str(exc)) from None
            return ReviewStream(parsed["tool"], parsed["records"], parsed["container"], path, inbox)
    raise ExportFormatError(f"{where}: a JSON object without 'images' and 'annotations' is neither a COCO file "
                            "nor a Label Studio export (a list of tasks)")


def read_review_file(path: str | os.PathLike, *, max_bytes: int | None = labelstudio.DEFAULT_MAX_EXPORT_BYTES,
                     keypoints: dict[str, list[str]] | None = None, inbox: Path | None = None,
                     stream: bool = False) -> ReviewFile:
    """Read and parse one review file with the reader of its format (:mod:`labelloop.formats.records`).

    Args:
        path: the file (``.json``, ``.xml`` or ``.zip``: CVAT's, a COCO file's, a YOLO dataset).
        max_bytes: size limit (``review.max_export_mb``); ``None`` for none.
        keypoints: ``{category: [keypoint names]}`` (CVAT skeletons, COCO keypoints, YOLO pose).
        inbox: the review inbox (a file in a subfolder of it takes the subfolder as its default source).
        stream: hand a Label Studio export's records out while the file is read
            (:func:`open_review_file`): ``records`` is then an iterator to read once, which raises
            :class:`~labelloop.formats.labelstudio.reader.ExportFormatError` when the file turns
            out malformed part-way, and ``default_source`` is the one its first record names (a
            later record naming its project in a file whose first does not changes it: callers
            that need the exact source track the records' ``project``). Other formats are read
            whole either way.

    A CVAT XML without ``<updated>`` / ``<dumped>`` (e.g. written by datumaro), a COCO file
    without ``info.date_created`` and a YOLO label member without a zip date take the file's
    modification time (UTC) as their version time (other YOLO labels: the member's zip date);
    ``labelloop import-review`` keeps the export's own mtime when it copies it into the inbox.

    Returns:
        :class:`~labelloop.formats.records.ReviewFile`: ``format`` (the tool: ``label-studio``,
        ``cvat``, ``coco``, ``yolo``), ``records`` and ``default_source``
        (:func:`labelloop.formats.records.default_source`).

    Raises:
        ExportFormatError (ExportTooLarge): the file as a whole is not a review export, or too large.
        OSError: the file cannot be read.
    """
    opened = open_review_file(path, max_bytes=max_bytes, keypoints=keypoints, inbox=inbox)
    if stream:
        try:
            opened.peek()
        except BaseException:
            opened.close()
            raise
        return {"format": opened.format, "records": opened.records,  # type: ignore[typeddict-item]
                "default_source": opened.default_source()}
    try:
        records = list(opened.records)
    finally:
        opened.close()
    return {"format": opened.format, "records": records, "default_source": opened.default_source()}
