"""CPU layouts for the benchmarks that start the product and its rig on one machine.

``shared`` (the default): every process may run on every CPU this process may use, so the product
(gateways with their learning workers, the scorer), the rig (fake providers, fake judge, a Redis
store) and the load-generating client compete for the same cores. ``split``: the product's
processes run on ``--product-cpus`` and the rig's plus the client on ``--rig-cpus``, which models a
deployment where providers, judge and clients are other machines.

How: the benchmark process (the client) pins every one of its threads to the rig's CPUs at the
start (:meth:`CpuLayout.enter_rig`), so what it starts afterwards inherits them; a product process
is started while the starting thread is pinned to the product's CPUs (:meth:`CpuLayout.product_spawns`:
a child inherits the mask of the thread that forks it), so its threads and children (a gateway's
learning worker) run there too, and the scorer sizes its intra-op threads from that mask.
``observed`` reads each process's mask back from ``/proc/PID/status``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


class CpuLayoutError(ValueError):
    """A CPU list or layout this machine cannot run (the message says which and why)."""


def usable_cpus() -> frozenset[int]:
    """The CPUs this process may run on (its affinity mask)."""
    return frozenset(os.sched_getaffinity(0))


def format_cpus(cpus: Iterable[int]) -> str:
    """``{0, 1, 2, 5}`` -> ``"0-2,5"`` (the kernel's ``Cpus_allowed_list`` form)."""
    parts: list[str] = []
    ordered = sorted(cpus)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def parse_cpus(text: str, usable: frozenset[int] | None = None) -> frozenset[int]:
    """A CPU list as taskset and the kernel write it (``"1"``, ``"0-3"``, ``"0,2-3"``), each CPU one
    this process may use (``usable``, default its affinity mask)."""
    usable = usable_cpus() if usable is None else usable
    cpus: set[int] = set()
    for part in text.split(","):
        m = _RANGE.match(part.strip())
        if m is None:
            raise CpuLayoutError(f"{text!r} is not a CPU list (e.g. 0, 0-3, 0,2-3)")
        lo, hi = int(m[1]), int(m[2] or m[1])
        if hi < lo:
            raise CpuLayoutError(f"{text!r}: range {part.strip()} runs backwards")
        cpus.update(range(lo, hi + 1))
    if missing := cpus - usable:
        raise CpuLayoutError(
            f"{text!r}: CPU {format_cpus(missing)} is not one this process may use ({format_cpus(usable)})"
        )
    return frozenset(cpus)


def cpus_allowed(pid: int) -> frozenset[int]:
    """The CPUs process ``pid`` may run on, as ``/proc/PID/status``'s ``Cpus_allowed_list`` says."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return parse_cpus(line.partition(":")[2].strip(), usable=frozenset(range(os.cpu_count() or 1)))
    raise CpuLayoutError(f"/proc/{pid}/status has no Cpus_allowed_list")


@dataclass(frozen=True)
class CpuLayout:
    """Where the product's processes and the rig's (with the client) run; ``None``: shared."""

    product: frozenset[int] | None = None
    rig: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if (self.product is None) != (self.rig is None):
            raise CpuLayoutError("give both --product-cpus and --rig-cpus, or neither (the shared layout)")
        if self.product is not None and self.rig is not None:
            if not self.product or not self.rig:
                raise CpuLayoutError("each side of a split layout needs at least one CPU")
            if both := self.product & self.rig:
                raise CpuLayoutError(f"--product-cpus and --rig-cpus share CPU {format_cpus(both)}: they must not")

    @property
    def name(self) -> str:
        return "shared" if self.product is None else "split"

    def describe(self) -> str:
        if self.product is None or self.rig is None:
            return f"CPU layout shared (product, rig and client on CPUs {format_cpus(usable_cpus())})"
        return (
            f"CPU layout split (product: gateways, learning workers, scorer on CPU {format_cpus(self.product)};"
            f" rig: fake providers, judge, store and the client on CPU {format_cpus(self.rig)})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "layout": self.name,
            "product_cpus": None if self.product is None else format_cpus(self.product),
            "rig_cpus": None if self.rig is None else format_cpus(self.rig),
        }

    def enter_rig(self) -> None:
        """Pin every thread of this process (the client) to the rig's CPUs; no-op when shared."""
        if self.rig is not None:
            for task in Path("/proc/self/task").iterdir():
                with contextlib.suppress(ProcessLookupError):  # the thread exited meanwhile
                    os.sched_setaffinity(int(task.name), self.rig)

    @contextlib.contextmanager
    def product_spawns(self) -> Iterator[None]:
        """Processes started inside run on the product's CPUs (the calling thread's mask while it forks)."""
        if self.product is None:
            yield
            return
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.product)
        try:
            yield
        finally:
            os.sched_setaffinity(0, before)

    def check(self, roles: Mapping[str, Iterable[int]]) -> dict[str, dict[int, str]]:
        """Each role's processes' CPU masks ({"product": pids, "rig": pids}), read back from /proc; raises
        when one is not where this layout puts it. Returns {role: {pid: Cpus_allowed_list}}."""
        want = {"product": self.product, "rig": self.rig}
        seen: dict[str, dict[int, str]] = {}
        for role, pids in roles.items():
            seen[role] = {}
            for pid in pids:
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # exited meanwhile
                    mask = cpus_allowed(pid)
                    seen[role][pid] = format_cpus(mask)
                    expected = want[role]
                    if expected is not None and mask != expected:
                        raise CpuLayoutError(
                            f"{role} process {pid} runs on CPU {format_cpus(mask)}, not {format_cpus(expected)}"
                        )
        return seen


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--product-cpus`` and ``--rig-cpus`` (both or neither)."""
    parser.add_argument(
        "--product-cpus",
        type=_cpus_arg,
        help="split layout: run the gateways (with their learning workers) and the scorer on these CPUs"
        " (e.g. 0); with --rig-cpus. Default: shared, every process on every CPU",
    )
    parser.add_argument(
        "--rig-cpus",
        type=_cpus_arg,
        help="split layout: run the fake providers, the fake judge, the store server and the load-generating"
        " client on these CPUs (e.g. 1), as if they were other machines; with --product-cpus",
    )


def from_args(args: argparse.Namespace) -> CpuLayout:
    """The layout ``add_arguments``' options ask for; exits with the reason when it is not one."""
    try:
        return CpuLayout(args.product_cpus, args.rig_cpus)
    except CpuLayoutError as exc:
        raise SystemExit(f"error: {exc}") from None


def _cpus_arg(text: str) -> frozenset[int]:
    try:
        return parse_cpus(text)
    except CpuLayoutError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: The default layout: every process on every CPU this process may use.
SHARED = CpuLayout()
