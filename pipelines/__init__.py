"""The Dagster code location of labelloop and its command line.

- :mod:`~pipelines.definitions`: the code location (``dagster dev -m pipelines.definitions``);
- :mod:`~pipelines.environments`: ``LABELLOOP_ENV`` / ``LABELLOOP_EXECUTOR`` choose every resource
  and the executor;
- :mod:`~pipelines.jobs`, :mod:`~pipelines.release_jobs`, :mod:`~pipelines.partitions`: jobs and the
  batch partitions;
- :mod:`~pipelines.sensors`, :mod:`~pipelines.s3_sensors`, :mod:`~pipelines.reprocess`: sensors and
  the reprocessing schedule;
- :mod:`~pipelines.runner`: runs a job against a workspace's instance (the CLI's engine);
- :mod:`~pipelines.cli`: the ``labelloop`` command.
"""
