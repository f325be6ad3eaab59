"""Device and dtype selection, and out-of-memory halving on its own (the batched pre-labeler's
use of it is in test_prelabel_resume.py)."""

from __future__ import annotations

import pytest
import torch

from labelloop.prelabel.backends.runtime import (
    DeviceError,
    OomHalving,
    autocast,
    autocast_dtype,
    is_oom,
    resolve_device,
)

CPU = torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="asserts the error a machine without CUDA gives")
def test_cuda_without_cuda_is_an_error_not_a_fallback():
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto") == CPU


def test_device_names():
    assert resolve_device("cpu") == CPU
    with pytest.raises(DeviceError, match="not a device"):
        resolve_device("gpu0")
    with pytest.raises(DeviceError, match="only cpu, cuda"):
        resolve_device("meta")


def test_autocast_dtypes_on_cpu():
    assert autocast_dtype(CPU, "auto") is None and autocast_dtype(CPU, "float32") is None
    assert autocast_dtype(CPU, "bfloat16") is torch.bfloat16
    with pytest.raises(DeviceError, match="float16 autocast needs CUDA"):
        autocast_dtype(CPU, "float16")
    lin = torch.nn.Linear(4, 4)
    with autocast(CPU, torch.bfloat16):
        assert lin(torch.ones(1, 4)).dtype is torch.bfloat16
    with autocast(CPU, None):
        assert lin(torch.ones(1, 4)).dtype is torch.float32


def test_halving_retries_the_same_items_and_keeps_the_smaller_size():
    seen = []

    def fn(piece):
        seen.append(list(piece))
        if len(piece) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [x * 10 for x in piece]

    h = OomHalving(batch_size=8, device=CPU)
    out = list(h.run(list(range(7)), fn))
    assert [r for _, res in out for r in res] == [x * 10 for x in range(7)]
    assert h.events == [(7, 4), (4, 2)] and h.batch_size == 2
    assert seen[0] == list(range(7)) and seen[1] == [0, 1, 2, 3]
    later = list(h.run([7, 8, 9], fn))  # the next batch starts at the reduced size
    assert [list(p) for p, _ in later] == [[7, 8], [9]]


def test_an_item_that_fails_alone_is_yielded_as_an_error():
    def fn(piece):
        if 3 in piece:
            raise torch.OutOfMemoryError("out of memory")
        return list(piece)

    out = list(OomHalving(batch_size=4, device=CPU).run([1, 2, 3, 4], fn))
    errors = [(list(p), r) for p, r in out if isinstance(r, BaseException)]
    assert [p for p, _ in errors] == [[3]] and is_oom(errors[0][1])
    assert sorted(x for p, r in out if not isinstance(r, BaseException) for x in r) == [1, 2, 4]


def test_other_errors_propagate():
    def fn(piece):
        raise ValueError("a bug, not memory")

    with pytest.raises(ValueError):
        list(OomHalving(batch_size=2, device=CPU).run([1, 2], fn))
