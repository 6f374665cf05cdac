"""The connector registry: what the installed connectors offer, found through entry points
(`adaldyk.connectors` for the connectors, `adaldyk.sandboxes` for their sandboxes).

It imports nothing of the core, so the settings and the ports can both use it without an import circle.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points

CONNECTOR_GROUP = "adaldyk.connectors"


@functools.cache
def installed_connectors() -> tuple[dict[str, object], dict[str, str]]:
    """What each connector entry point names (a connector class), and the ones that failed to load."""
    return load_entry_points(CONNECTOR_GROUP)


def load_entry_points(group: str) -> tuple[dict[str, object], dict[str, str]]:
    """What each entry point of `group` names, and the ones that failed to load with the reason: a
    broken install of one channel must not take the others down; it shows on /healthz instead."""
    loaded: dict[str, object] = {}
    broken: dict[str, str] = {}
    for ep in entry_points(group=group):
        try:
            loaded[ep.name] = ep.load()
        except Exception as exc:  # ImportError, or any error raised while importing the module
            broken[ep.name] = f"cannot load {ep.value}: {type(exc).__name__}: {exc}"
    return loaded, broken
