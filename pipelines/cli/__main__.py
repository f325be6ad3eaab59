"""``python -m pipelines.cli``: the ``labelloop`` command without the installed script."""

from pipelines.cli import main

main()
