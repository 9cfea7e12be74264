"""The five services and the console. Each module `services.<name>.app` exposes `definition`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from shared.settings import PROCESSES

if TYPE_CHECKING:
    from shared.runtime import ServiceDefinition


def load(name: str) -> ServiceDefinition[Any]:
    if name not in PROCESSES:
        raise KeyError(f"unknown service {name!r}; the services are: {', '.join(PROCESSES)}")
    module = importlib.import_module(f"services.{name}.app")
    return module.definition  # type: ignore[no-any-return]
