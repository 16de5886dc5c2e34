"""Early stopping policies (``resource_args.early_stop``).

Placeholder interface; the policies are implemented in the lifecycle work.
"""

from __future__ import annotations

from typing import Any

from aup.errors import Problem

POLICIES = ("bandit", "median", "truncation", "curve_fitting")


def validate_early_stop(options: dict[str, Any]) -> list[Problem]:
    """Problems with ``resource_args.early_stop``."""
    policy = options.get("aup_policy")
    if policy not in POLICIES:
        return [Problem("resource_args.early_stop.aup_policy", "unknown early-stopping policy",
                        policy, "use one of " + ", ".join(POLICIES))]
    return []


def make_policy(options: dict[str, Any], maximize: bool) -> Any:
    """Build the configured policy."""
    raise NotImplementedError("early stopping is not implemented yet")
