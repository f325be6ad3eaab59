"""What the benchmark scripts share (``from _timing import timed``: a script's own folder is
``sys.path[0]`` when it runs as ``python benchmarks/<script>.py``)."""

import time


def timed(fn):
    """``(fn(), wall seconds)``, timed with ``time.perf_counter``."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t
