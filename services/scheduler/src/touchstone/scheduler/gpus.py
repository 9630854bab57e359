"""Which on-prem GPUs a task's ``gpu_type`` accepts. Pure.

A task names its GPU type the way RunPod does: the catalog id (``"NVIDIA GeForce RTX 4090"``)
or the display name (``"RTX 4090"``); ``None`` or ``"any"`` accepts every GPU. A server's GPU
models come from its agent's heartbeat (``GpuStatus.name`` per device index, as ``nvidia-smi``
names them) and, where the heartbeat names none, from the admin's ``Server.gpus``.

The match, case-insensitive: both names are cut into alphanumeric words (``"A100-SXM4-80GB"``
-> ``a100 sxm4 80gb``), the vendor words ``nvidia`` and ``geforce`` are dropped, and the two
match when the words of one are all among the words of the other. So ``"RTX 4090"`` matches
``"NVIDIA GeForce RTX 4090"``, ``"A100"`` matches ``"NVIDIA A100-SXM4-80GB"``, ``"H100"``
matches ``"H100 NVL"``; ``"A40"`` does not match ``"RTX A4000"`` (whole words only), and
``"A100 80GB PCIe"`` does not match ``"A100-SXM4-80GB"``. A GPU whose model is unknown matches
no named type.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from touchstone.shared.agents import GpuStatus

VENDOR_WORDS = frozenset({"nvidia", "geforce"})
_WORD = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=1024)
def gpu_words(name: str) -> frozenset[str]:
    return frozenset(w for w in _WORD.findall(name.lower()) if w not in VENDOR_WORDS)


def wants_gpu_type(gpu_type: str | None) -> bool:
    """Whether a task's ``gpu_type`` restricts where it runs."""
    return bool(gpu_type) and gpu_type.strip().lower() != "any"  # type: ignore[union-attr]


@lru_cache(maxsize=4096)
def gpu_matches(gpu_type: str | None, model: str) -> bool:
    """Whether a GPU of ``model`` serves a task asking for ``gpu_type``."""
    if not wants_gpu_type(gpu_type):
        return True
    wanted, have = gpu_words(gpu_type or ""), gpu_words(model)
    return bool(wanted) and bool(have) and (wanted <= have or have <= wanted)


def slot_models(slots: int, reported: Sequence[GpuStatus], declared: Sequence[str]) -> tuple[str, ...]:
    """The GPU model behind each slot ``0..slots-1`` (``""`` where unknown): the heartbeat's
    name for that device index, else the declared ``Server.gpus[i]``, else the declared model
    when the server declares just one kind."""
    by_index = {g.index: g.name for g in reported if g.name}
    only = declared[0] if declared and len(set(declared)) == 1 else ""
    return tuple(by_index.get(i) or (declared[i] if i < len(declared) else only) for i in range(slots))
