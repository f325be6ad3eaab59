"""Per-environment wiring: one switch, ``LABELLOOP_ENV=local|production``, chooses every resource
and the executor (docs/design.md, "Embedded defaults and production parts").

- instance: SQLite under DAGSTER_HOME (local); PostgreSQL, ``LABELLOOP_DAGSTER_PG_URL`` (production)
- storage: the workspace folder; S3 through ``resources.storage.storage_resource_from_env``
- review tool: Label Studio files (a server when ``LABEL_STUDIO_URL`` is set); the live Label
  Studio server (``LABEL_STUDIO_URL``, ``LABEL_STUDIO_API_KEY``)
- DVC remote: a local folder (or ``LABELLOOP_DVC_REMOTE``); S3 (``LABELLOOP_DVC_REMOTE=s3://...``)
- executor: in-process (CLI) or Dagster's multiprocess-or-in-process default (UI); Celery queues
  ``gpu`` + ``cpu`` (``celery``) or one Kubernetes Job per step (``k8s``)

``LABELLOOP_EXECUTOR`` (``in_process``, ``multiprocess``, ``celery``, ``k8s``) overrides the
environment's executor. Secrets (URLs with passwords, tokens) are read only through ``dg.EnvVar``
or Dagster's ``{"env": NAME}`` config, at launch, where the step runs; they are never written
into a file. ``.env.example`` lists every variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dagster as dg

from labelloop.store import StoreError, StoreSettings
from resources.dvc import DvcRepoResource
from resources.prelabeler import PreLabelerResource
from resources.review_tool import LabelStudioFilesResource, LabelStudioServerResource

ENV_VAR, EXECUTOR_VAR = "LABELLOOP_ENV", "LABELLOOP_EXECUTOR"
ENVIRONMENTS = ("local", "production")
EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")
# Celery: the broker and result backend URLs (may hold passwords) come from these variables.
CELERY_BROKER_VAR, CELERY_BACKEND_VAR = "LABELLOOP_CELERY_BROKER_URL", "LABELLOOP_CELERY_BACKEND_URL"
K8S_NAMESPACE_VAR = "LABELLOOP_K8S_NAMESPACE"
CPU_QUEUE = "cpu"  # the default queue; assets/prelabels.py sends its step to "gpu"

# The variables each production part needs (checked when the definitions load).
PRODUCTION_REQUIRED = ("LABELLOOP_DAGSTER_PG_URL", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY",
                       "LABELLOOP_DVC_REMOTE")
EXECUTOR_REQUIRED = {"celery": (CELERY_BROKER_VAR, CELERY_BACKEND_VAR), "k8s": ()}
STORE_URL_VAR = "LABELLOOP_STORE_URL"  # the S3 store (resources.storage.storage_resource_from_env)


def production_required() -> tuple[str, ...]:
    """PRODUCTION_REQUIRED plus LABELLOOP_STORE_URL (production keeps images and tables on S3)."""
    return PRODUCTION_REQUIRED + (STORE_URL_VAR,)


class EnvConfigError(ValueError):
    """An unknown LABELLOOP_ENV / LABELLOOP_EXECUTOR value, or a production variable missing."""


@dataclass(frozen=True)
class Environment:
    """The chosen environment: ``name`` (local / production) and ``executor`` (one of EXECUTORS)."""

    name: str
    executor: str

    @property
    def production(self) -> bool:
        return self.name == "production"


def get_env(environ: dict | None = None) -> Environment:
    """The environment from ``LABELLOOP_ENV`` (default ``local``) and ``LABELLOOP_EXECUTOR``
    (default: ``in_process`` locally, ``celery`` in production).

    Raises:
        EnvConfigError: an unknown value (the message names the variable and the choices), or,
            in production, required variables unset or blank (all of them named), or an
            unusable LABELLOOP_STORE_URL (:meth:`labelloop.store.StoreSettings.check_url`).
    """
    environ = os.environ if environ is None else environ
    name = environ.get(ENV_VAR, "local").strip() or "local"
    if name not in ENVIRONMENTS:
        raise EnvConfigError(f"{ENV_VAR}={name!r}: expected one of {', '.join(ENVIRONMENTS)}")
    executor = environ.get(EXECUTOR_VAR, "").strip() or ("celery" if name == "production" else "in_process")
    if executor not in EXECUTORS:
        raise EnvConfigError(f"{EXECUTOR_VAR}={executor!r}: expected one of {', '.join(EXECUTORS)}")
    needed = EXECUTOR_REQUIRED.get(executor, ())
    if name == "production":
        needed = production_required() + needed
    missing = [v for v in needed if not str(environ.get(v) or "").strip()]  # blank is unset
    if missing:
        raise EnvConfigError(f"{ENV_VAR}={name} with executor {executor} needs {', '.join(missing)} "
                                f"(see .env.example)")
    if name == "production":  # a bad store URL fails here, not in the middle of the first run

        try:
            StoreSettings(url=environ[STORE_URL_VAR]).check_url()
        except StoreError as exc:
            raise EnvConfigError(f"{ENV_VAR}=production: {exc}") from None
    return Environment(name=name, executor=executor)


# ---- executors ----------------------------------------------------------------------------------
# Losing a worker mid-step (docs/guides/production.md). By default a worker acks a step's message as it starts the
# step (task_acks_late=False), so a worker killed mid-step (OOM, node loss) took the message with
# it and the run waited forever on a result nobody would write. With the settings below the
# message is acked only when the step returns, so the broker hands it to another worker and the
# step runs again there (steps are idempotent: every write is atomic and keyed by batch/image,
# docs/design.md, "Data model"; the run's event log shows both attempts):
# - task_acks_late: ack after the task returns
#   (https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-acks-late).
# - whole worker lost (OOM-killed, its node gone): Redis keeps an unacked message aside and any
#   worker of the queue puts it back on it once it is older than visibility_timeout
#   (https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout).
#   It must exceed the longest step: a step still running after it is started a second time.
#   RabbitMQ redelivers as soon as the dead worker's connection closes.
# - pool child lost (a prefork CPU worker's child OOM-killed, the worker survives): without these
#   the worker acks the message and stores WorkerLostError, which fails the run. With
#   task_retry_on_worker_lost (Celery >= 5.7) it re-sends the task like Task.retry, at most
#   max_retries times, then stores WorkerLostError: a step that kills its process every time
#   fails the run instead of looping; task_reject_on_worker_lost re-queues it if that re-send
#   fails (https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-reject-on-worker-lost).
# The worker applies these (deploy/celery/celery.yaml repeats this block; a test checks it).
CELERY_VISIBILITY_TIMEOUT_S = 6 * 3600  # longest step allowed before Redis hands it out again
CELERY_WORKER_LOST_RETRIES = 2  # re-runs of a step after its pool child died, then the run fails
CELERY_CONFIG = {
    "broker": {"env": CELERY_BROKER_VAR},
    "backend": {"env": CELERY_BACKEND_VAR},
    "config_source": {
        # steps without a dagster-celery/queue tag go to the cpu queue; prelabels carries gpu
        "task_default_queue": CPU_QUEUE,
        "worker_prefetch_multiplier": 1,  # with acks_late: a worker holds one step, no backlog
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_retry_on_worker_lost": True,
        # dagster-celery's step task is named "execute_plan"
        "task_annotations": {"execute_plan": {"max_retries": CELERY_WORKER_LOST_RETRIES,
                                              "default_retry_delay": 5}},
        # dagster_celery.defaults' connection-retry options, kept (this key replaces them)
        "broker_transport_options": {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT_S, "max_retries": 3,
                                     "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    },
}

# Defaults of every step pod; prelabels' own dagster-k8s/config tag (K8S_GPU_TAGS) adds the GPU.
K8S_CONFIG = {
    "job_namespace": {"env": K8S_NAMESPACE_VAR},
    "step_k8s_config": {"container_config": {"resources": {
        "requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "8Gi"}}}},
}


def executor_for(env: Environment) -> dg.ExecutorDefinition | None:
    """The executor of ``env`` (None: Dagster's default multiprocess-or-in-process)."""
    if env.executor == "celery":
        from dagster_celery import celery_executor  # optional (the production extra)

        return celery_executor.configured(CELERY_CONFIG, name="celery")
    if env.executor == "k8s":
        from dagster_k8s import k8s_job_executor  # optional (the production extra)

        cfg = dict(K8S_CONFIG)
        if not os.environ.get(K8S_NAMESPACE_VAR):
            cfg.pop("job_namespace")  # the run pod's namespace
        return k8s_job_executor.configured(cfg, name="k8s")
    if env.executor == "multiprocess":
        return dg.multiprocess_executor
    return None


# ---- resources ----------------------------------------------------------------------------------
def storage_for(root: str, env: Environment):
    """The storage resource: images and tables on S3 when LABELLOOP_STORE_URL is set (required in
    production, allowed locally), else the workspace folder
    (:func:`resources.storage.storage_resource_from_env`)."""
    from resources.storage import storage_resource_from_env  # dagster-aws (over a second): only when resources are built

    return storage_resource_from_env(root)


def review_tool_for(env: Environment):
    """The live Label Studio server when LABEL_STUDIO_URL is set (always in production: URL and
    token through ``dg.EnvVar``; optional LABEL_STUDIO_PROJECT_TITLE,
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT and LABEL_STUDIO_WORKSPACE_PATH), else the files route."""

    if not (env.production or os.environ.get("LABEL_STUDIO_URL")):
        return LabelStudioFilesResource()
    return LabelStudioServerResource(
        url=dg.EnvVar("LABEL_STUDIO_URL"), api_key=dg.EnvVar("LABEL_STUDIO_API_KEY"),
        project_title=os.environ.get("LABEL_STUDIO_PROJECT_TITLE", ""),
        document_root=os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", ""),
        workspace_path=os.environ.get("LABEL_STUDIO_WORKSPACE_PATH", ""),
    )


def resources_for(root: str, env: Environment) -> dict:
    """Every resource of ``env`` for the workspace at ``root`` (an absolute path)."""

    return {
        "storage": storage_for(root, env),
        "prelabeler": PreLabelerResource(),
        "dvc": DvcRepoResource.from_env(),  # LABELLOOP_DVC_REMOTE etc. through dg.EnvVar
        "review_tool": review_tool_for(env),
    }
