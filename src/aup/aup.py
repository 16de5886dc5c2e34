"""Auptimizer 2.0's module path of the client helpers, kept so that 2.0 scripts run unchanged
(``from aup.aup import BasicConfig, print_result``): the same objects as :mod:`aup.client`
(standard library only)."""

from aup.client import BasicConfig, aup_args, aup_flags, aup_save_model, print_result

__all__ = ["BasicConfig", "aup_args", "aup_flags", "aup_save_model", "print_result"]
