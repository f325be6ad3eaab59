"""Sensor for new batches in the S3 inbox (``<store>/inbox/<batch>/``), with a cursor.

The local-folder twin is :func:`pipelines.sensors.inbox_sensor`; it stands aside when the
store is S3.
"""

from __future__ import annotations

import json

import dagster as dg

from labelloop.workspace.layout import BATCH_NAME
from pipelines.jobs import batch_job
from pipelines.partitions import BATCHES
from resources.storage import WorkspaceResource


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b/")`` (prefix ends with ``/``, or is empty)."""
    rest = url.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    prefix = prefix.strip("/")
    return bucket, (prefix + "/" if prefix else "")


def list_batch_prefixes(client, bucket: str, inbox_prefix: str) -> list[str]:
    """Names of the "folders" directly under ``inbox_prefix`` (``ListObjectsV2`` with
    ``Delimiter="/"``: its CommonPrefixes), every page, keeping valid batch names only."""
    names: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=inbox_prefix, Delimiter="/"):
        for cp in page.get("CommonPrefixes", []):
            name = cp["Prefix"][len(inbox_prefix):].rstrip("/")
            if BATCH_NAME.fullmatch(name):
                names.append(name)
    return sorted(names)


def new_batches(cursor: str | None, found: list[str], known: set[str]) -> tuple[list[str], str]:
    """``(batches to run, next cursor)``: ``found`` minus those in the cursor (a JSON list of
    every batch seen) and minus already registered partitions ``known``."""
    seen = set(json.loads(cursor)) if cursor else set()
    new = [b for b in found if b not in seen and b not in known]
    return new, json.dumps(sorted(seen | set(found)))


@dg.sensor(job=batch_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def s3_inbox_sensor(context: dg.SensorEvaluationContext, storage: WorkspaceResource):
    """Registers a partition and requests one batch_job run for each new ``inbox/<batch>/``
    prefix of the S3 store (listed with the S3Resource's boto3 client). The cursor keeps every
    batch seen, so re-evaluation and restarts (the cursor lives in the Dagster instance) never
    request a batch twice; run keys ``batch-<name>`` guard the same on the Dagster side."""
    store = storage.store()
    if not store.is_remote:
        return dg.SkipReason("the store is the workspace folder: inbox_sensor watches it")
    bucket, prefix = split_url(store.url)
    found = list_batch_prefixes(storage.s3_client(), bucket, prefix + "inbox/")
    new, cursor = new_batches(context.cursor, found, set(context.instance.get_dynamic_partitions(BATCHES)))
    if not new:
        context.update_cursor(cursor)
        return dg.SkipReason(f"no new batch under s3://{bucket}/{prefix}inbox/")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=b, run_key=f"batch-{b}") for b in new],
        dynamic_partitions_requests=[dg.DynamicPartitionsDefinition(name=BATCHES).build_add_request(new)],
        cursor=cursor,
    )
