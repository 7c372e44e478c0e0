"""Topics for the bus-mechanics tests (sockets, recorder, replay): registered like every topic, with any
header fields and any arrays, so those tests exercise the real receive path without a real body."""

from __future__ import annotations

from typing import ClassVar

from pydantic import ConfigDict

from kinebridge.runtime.bus import messages as M


@M.topic("test/a", publishers=(M.ANY,), description="bus mechanics tests: any fields, any arrays")
class _A(M.Body):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)
    ARRAYS: ClassVar = None


@M.topic("test/b", publishers=(M.ANY,), description="bus mechanics tests: any fields, any arrays")
class _B(_A):
    pass


A, B = "test/a", "test/b"
