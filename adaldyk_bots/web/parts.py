"""What the web app needs from the running service, as a protocol: the web never imports the runtime
(which starts the web server), so the two cannot import each other."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from sqlalchemy import Engine

from adaldyk_bots.ports import Connector, IntakeSink
from adaldyk_bots.settings import Settings
from adaldyk_bots.workflow import Workflow


class AppParts(Protocol):
    """Satisfied by `runtime.Runtime`; a test may hand the app any object with these attributes."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def workflow(self) -> Workflow: ...

    @property
    def intake(self) -> IntakeSink: ...

    @property
    def connectors(self) -> Mapping[str, Connector]: ...

    @property
    def off(self) -> Sequence[str]:
        """Installed channels without credentials."""
        ...

    @property
    def unavailable(self) -> Mapping[str, str]:
        """Channels whose connector could not load, with the reason."""
        ...
