"""``resource: gpu``: local job slots, one per GPU id.

Slots come from ``resource_args.gpus`` (a list such as ``[0, 1]``; an id listed twice gives two
slots on the same card; an entry may name several cards, ``"0,1"``) or, when that key is absent,
from ``gpu_mapping`` of ``.aup/env.ini`` (written by ``aup setup``). Each job runs like a
``cpu`` job (:class:`~aup.resources.local.LocalProcess`) with ``CUDA_VISIBLE_DEVICES`` set to its
slot's id in the job's own environment copy. The slot's id wins over a
``CUDA_VISIBLE_DEVICES`` in ``runtime_args.env`` so that two jobs never share a card by accident.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from typing import Any, ClassVar

from pydantic import field_validator

from aup.errors import AupError
from aup.resources.base import AttemptSpec, ResourceOptions, Slot
from aup.resources.local import CPUResourceManager, job_environment

log = logging.getLogger(__name__)


def nvidia_gpu_indices(timeout: float = 10.0) -> list[str] | None:
    """Indices of the NVIDIA GPUs of this machine, from ``nvidia-smi -L``.

    Returns:
        The indices as strings (``["0", "1"]``), or None when there is no ``nvidia-smi`` on
        PATH or it fails (no driver): the caller cannot tell which GPUs exist.
    """
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return None
    return re.findall(r"^GPU (\d+):", res.stdout, re.M)


#: Largest GPU index accepted (no machine has more cards; a longer number is a typo).
MAX_GPU_ID = 1023


class GPUOptions(ResourceOptions):
    """``resource_args`` of ``gpu``.

    Attributes:
        gpus: GPU ids, one slot per entry (ints or strings such as ``"0,1"``); None: use
            ``gpu_mapping`` from env.ini.
    """

    gpus: list[str] | None = None

    @field_validator("gpus", mode="before")
    @classmethod
    def _ids(cls, v: Any) -> Any:
        if v is None:
            return v
        if not isinstance(v, list) or not v:
            raise ValueError('give a non-empty list of GPU ids, e.g. "gpus": [0, 1]')
        out = []
        for item in v:
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise ValueError(f"the entry {item!r} is not a GPU id: an id is an integer or "
                                 "a string like \"0,1\"")
            text = str(item).replace(" ", "")
            if any(p.startswith("-") and p[1:].isdigit() for p in text.split(",")):
                raise _out_of_range(item)
            if not text or not all(p.isdigit() for p in text.split(",")):
                raise ValueError(f"the entry {item!r} is not a GPU id: an id is digits (\"0\" or "
                                 "\"0,1\")")
            if any(int(p) > MAX_GPU_ID for p in text.split(",")):
                raise _out_of_range(item)
            out.append(text)
        return out


def _out_of_range(item: Any) -> ValueError:
    return ValueError(f"the GPU id {item!r} is out of range: an id is the index nvidia-smi -L "
                      f"lists, 0 to {MAX_GPU_ID}")


class GPUResourceManager(CPUResourceManager):
    """Local jobs, each pinned to the GPU id(s) of its slot (see the module docstring)."""

    kind: ClassVar[str] = "gpu"
    slot_source: ClassVar[str] = 'one per GPU id ("gpus")'
    Options = GPUOptions
    resume_args: ClassVar[tuple[str, ...]] = ("gpus",)

    def gpu_ids(self) -> list[str]:
        """The GPU id of every slot, in slot order (resource_args first, then env.ini)."""
        if self.options.gpus:
            return list(self.options.gpus)
        return list(getattr(self.env_file, "gpus", None) or [])

    @property
    def slots(self) -> list[Slot]:
        return [Slot(f"gpu:{i}/{gid}", "gpu", gid) for i, gid in enumerate(self.gpu_ids())]

    #: Set by :meth:`check`: :meth:`prepare` does not warn a second time (``aup run`` checks
    #: before opening the database, then prepares the same instance).
    _checked = False

    def prepare(self) -> None:
        if not self._checked:
            self.check()

    def check(self) -> None:
        """No GPU ids at all is an error; ids this machine does not have (or no NVIDIA driver)
        are a warning: the jobs would silently run on the CPU."""
        ids = self.gpu_ids()
        if not ids:
            raise AupError('resource "gpu" has no GPU ids: give resource_args "gpus": [0, 1] '
                           'in experiment.json, or run "aup setup --gpu 0,1" to write '
                           "gpu_mapping in .aup/env.ini")
        self._checked = True
        found = nvidia_gpu_indices()
        if found is None:
            log.warning('resource "gpu": no NVIDIA driver answers on this machine (nvidia-smi '
                        "is missing or fails); the jobs get CUDA_VISIBLE_DEVICES but may find "
                        "no GPU and run on the CPU")
            return
        missing = sorted({p for gid in ids for p in gid.split(",")} - set(found), key=int)
        if missing:
            log.warning('resource "gpu": GPU id(s) %s not on this machine (nvidia-smi lists %s); '
                        "jobs on those slots find no GPU", ", ".join(missing),
                        ", ".join(found) or "none")

    def slot_env(self, slot: Slot) -> dict[str, str]:
        return {**super().slot_env(slot), "CUDA_VISIBLE_DEVICES": slot.name}

    def job_env(self, spec: AttemptSpec, slot: Slot) -> dict[str, str]:
        env = job_environment(spec, self.slot_env(slot), self._environ)
        env["CUDA_VISIBLE_DEVICES"] = slot.name  # the slot wins over runtime_args.env
        return env
