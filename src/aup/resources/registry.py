"""Resource managers by name, imported on first use."""

from __future__ import annotations

import importlib

from aup.resources.base import ResourceManager

_RESOURCES: dict[str, str] = {
    "cpu": "aup.resources.local:CPUResourceManager",
    "gpu": "aup.resources.gpu:GPUResourceManager",
    "node": "aup.resources.ssh:SSHResourceManager",
    "aws": "aup.resources.aws:AWSResourceManager",
    "ray": "aup.resources.ray_cluster:RayResourceManager",
    "passive": "aup.resources.passive:PassiveResourceManager",
}


#: Optional modules a resource needs: name -> (pip extra, top-level module names).
REQUIREMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "node": ("ssh", ("paramiko",)),
    "aws": ("aws", ("paramiko", "boto3")),
    "ray": ("ray", ("ray",)),
}


def names() -> list[str]:
    """Registered resource names, sorted."""
    return sorted(_RESOURCES)


def get(name: str) -> type[ResourceManager]:
    """The resource manager class registered under ``name`` (case-insensitive).

    Raises:
        KeyError: no resource of that name.
    """
    target = _RESOURCES[name.strip().lower()]
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
