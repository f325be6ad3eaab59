"""Run labelloop's jobs through Dagster against a workspace's own instance (DAGSTER_HOME =
``<workspace>/.dagster``), so every CLI run appears in the Dagster UI."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import warnings
from dataclasses import dataclass, field

import dagster as dg

from labelloop.workspace.init import dagster_yaml
from labelloop.workspace.layout import Workspace
from pipelines.environments import get_env
from pipelines.partitions import BATCHES


def gpu_count() -> int:
    """Number of NVIDIA GPUs visible (``nvidia-smi -L``), 0 when none or no driver."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def get_instance(ws: Workspace) -> dg.DagsterInstance:
    """The workspace's Dagster instance (SQLite under DAGSTER_HOME), with the ``gpu`` pool set to
    the GPU count, at least 1 (0 would block every pre-label step forever)."""
    home = ws.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(dagster_yaml(), encoding="utf-8")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["LABELLOOP_WORKSPACE"] = str(ws.root)
    instance = dg.DagsterInstance.get()
    limit = max(1, gpu_count())
    info = instance.event_log_storage.get_concurrency_info("gpu")
    if info.slot_count != limit:
        instance.event_log_storage.set_concurrency_slots("gpu", limit)
    recover_dead_runs(instance)
    return instance


PID_TAG, HOST_TAG = "labelloop/pid", "labelloop/host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark as failed the CLI runs of this host whose process died (kill -9, a crash), and free
    the pool slots (``gpu``, ``dvc``) they held, which Dagster would otherwise keep forever, so
    every later step of that pool would wait. Returns the run ids recovered."""

    recovered = []
    records = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED,
                                                                dg.DagsterRunStatus.STARTING]))
    for run in records:
        pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if not pid or host != socket.gethostname() or _alive(int(pid)):
            continue
        instance.report_run_failed(run, message=f"labelloop: the process {pid} that ran this run is gone")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(run.run_id)
    return recovered


def quiet(verbose: bool) -> None:
    """Dagster's console logging stays quiet unless ``verbose``; the instance keeps every event."""
    if not verbose:
        warnings.filterwarnings("ignore")
        for name in ("dagster", "dvc"):
            logging.getLogger(name).setLevel(logging.ERROR)


@dataclass
class RunOutcome:
    """What a job run did: success, run id, failed steps and failed checks with their figures."""

    success: bool
    run_id: str
    failures: list[str] = field(default_factory=list)
    failed_checks: list[dict] = field(default_factory=list)
    warned_checks: list[dict] = field(default_factory=list)
    metadata: dict[str, dict] = field(default_factory=dict)

    def reason(self) -> str:
        if self.failed_checks:
            c = self.failed_checks[0]
            return (f"blocking check {c['name']} failed: {c['reason']} "
                    f"(measured {c['value']}, threshold {c['threshold']})")
        return self.failures[0] if self.failures else "run failed"


def _root_cause(err) -> str:
    """The innermost error's message, without its class path (``pkg.mod.Error: text`` -> text)."""
    if err is None:
        return "failed"
    while getattr(err, "cause", None) is not None:
        err = err.cause
    text = (err.message or "").strip().splitlines()
    line = text[0] if text else err.cls_name or "failed"
    head, sep, rest = line.partition(": ")
    return rest if sep and "." in head and " " not in head else line


def _meta_value(v):
    return getattr(v, "value", getattr(v, "text", v))


RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def execute(ws: Workspace, job_name: str, instance: dg.DagsterInstance, *, partition_key: str | None = None,
            partition_keys: list[str] | None = None, asset_selection: list[str] | None = None,
            run_config: dict | None = None, tags: dict | None = None, verbose: bool = False) -> RunOutcome:
    """Execute ``job_name`` against ``instance``; never raises for a failed step.

    ``partition_keys``: a contiguous range of batches run in one run (the backfill policy);
    ``asset_selection``: asset names, a subset of the job's. With the in-process executor (the
    local default) the run executes here; with another executor (LABELLOOP_EXECUTOR=celery,
    multiprocess) this process orchestrates and the steps run where the executor sends them
    (Celery workers rebuild the job through pipelines.definitions.reconstruct_job)."""
    # The code location imports every asset and resource (dagster-aws alone takes over a second):
    # loaded when a job runs, not when the CLI starts (`labelloop --help`, `status`, `lineage`).
    from pipelines.definitions import build_definitions, reconstructable_job

    level = "DEBUG" if verbose else "CRITICAL"
    config = {"loggers": {"console": {"config": {"log_level": level}}}, **(run_config or {})}
    keys = list(partition_keys or ([partition_key] if partition_key else []))
    if keys:
        instance.add_dynamic_partitions(BATCHES, keys)
    run_tags = {"labelloop/cli": job_name, PID_TAG: str(os.getpid()),
                HOST_TAG: __import__("socket").gethostname(), **(tags or {})}
    if len(keys) > 1:
        run_tags.update({RANGE_START: keys[0], RANGE_END: keys[-1]})
    selection = [dg.AssetKey(a) for a in asset_selection] if asset_selection else None
    if get_env().executor == "in_process":
        job = build_definitions(str(ws.root)).resolve_job_def(job_name)
        result = job.execute_in_process(instance=instance, run_config=config, tags=run_tags,
                                        partition_key=keys[0] if len(keys) == 1 else None,
                                        asset_selection=selection, raise_on_error=False)
    else:
        if len(keys) == 1:
            run_tags["dagster/partition"] = keys[0]
        result = dg.execute_job(reconstructable_job(str(ws.root), job_name), instance=instance, run_config=config,
                                tags=run_tags, asset_selection=selection, raise_on_error=False)
    out = RunOutcome(success=result.success, run_id=result.run_id)
    run_error = None
    for ev in result.all_events:
        if ev.event_type_value == "STEP_FAILURE":
            err = ev.step_failure_data.error
            desc = ev.step_failure_data.user_failure_data.description if ev.step_failure_data.user_failure_data else None
            out.failures.append(f"{ev.step_key}: {desc or _root_cause(err)}")
        if ev.event_type_value == "RUN_FAILURE" and ev.job_failure_data and ev.job_failure_data.error:
            run_error = _root_cause(ev.job_failure_data.error)  # e.g. the Celery broker unreachable
        if ev.event_type_value == "ENGINE_EVENT" and ev.engine_event_data and ev.engine_event_data.error:
            run_error = f"{ev.message}: {_root_cause(ev.engine_event_data.error)}"
        if ev.event_type_value == "ASSET_MATERIALIZATION":
            mat = ev.event_specific_data.materialization
            out.metadata[mat.asset_key.to_user_string()] = {k: _meta_value(v) for k, v in mat.metadata.items()}
    if not out.success and not out.failures and run_error:
        out.failures.append(run_error)
    for ev in result.get_asset_check_evaluations():
        md = {k: _meta_value(v) for k, v in ev.metadata.items()}
        row = {"name": ev.check_name, "reason": md.get("reason"), "value": md.get("value"),
               "threshold": md.get("threshold"), "images": md.get("images")}
        if not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR:
            out.failed_checks.append(row)
        elif not ev.passed:
            out.warned_checks.append(row)
    return out
