"""Several processes under `accelerate launch` (dvc.yaml starts every model stage that way): who
writes, which share of the work each process takes, and gathering the shares back in order.

A plain `python -m src.<stage>` is one process and every helper here is then a no-op. accelerate
(and torch) are imported only when more than one process runs.
"""
from __future__ import annotations

import os
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _state():
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    # Joins the process group the launcher set up. accelerate picks gloo on the CPU only when told
    # it runs there (the trainers' `use_cpu` does the same), so say so when there is no GPU.
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())


def rank() -> int:
    return _state().process_index if world_size() > 1 else 0


def is_main() -> bool:
    """Only the main process writes outputs, metrics and plots."""
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        _state().wait_for_everyone()


def gather(local: list) -> list:
    """Every process's list, concatenated in rank order, on every process."""
    if world_size() == 1:
        return list(local)
    from accelerate.utils import gather_object
    return gather_object(list(local))  # all_gather_object, flattened one level


def gather_indexed(pairs: list[tuple[int, T]], n: int) -> list[T]:
    """Reassemble (index, item) pairs computed across processes into one list of n items."""
    out: list = [None] * n
    seen = 0
    for i, item in gather(pairs):
        out[i] = item
        seen += 1
    if seen != n:
        raise RuntimeError(f"gathered {seen} results for {n} items: a process lost or repeated work")
    return out


def map_sharded(fn: Callable[[list], list], items: Sequence) -> list:
    """fn over this process's strided share of items, gathered back in the original order on every
    process. fn takes a list and returns one result per item (e.g. sandbox execution of jobs)."""
    world = world_size()
    if world == 1:
        return fn(list(items))
    r = rank()
    mine = list(range(r, len(items), world))
    results = fn([items[i] for i in mine])
    return gather_indexed(list(zip(mine, results)), len(items))


def sum_across(values: list[float]) -> list[float]:
    """Element-wise sums over processes (e.g. loss sums and counts for one logged figure)."""
    if world_size() == 1:
        return list(values)
    import torch
    import torch.distributed as dist
    t = torch.tensor(values, dtype=torch.float64, device=_state().device)
    dist.all_reduce(t)
    return t.tolist()


def device():
    """Where this process computes: its GPU under a GPU config, else the CPU."""
    return _state().device


def broadcast(obj):
    """The main process's value of obj, on every process (also a barrier)."""
    if world_size() == 1:
        return obj
    from accelerate.utils import broadcast_object_list
    return broadcast_object_list([obj], from_process=0)[0]


def finish() -> None:
    """Leave the process group cleanly (an abandoned gloo group aborts the process at exit)."""
    if world_size() > 1:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
