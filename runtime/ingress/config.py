"""The ``[ingress]`` table: where outside producers connect and what each may publish (pydantic only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kinebridge.runtime.bus import messages as M

__all__ = ["IngressConfig", "IngressClient", "INGRESS_TOPICS"]

INGRESS_TOPICS = M.INGRESS_TOPICS     # what may ever come through (fixed in the registry's module)


def _check_topics(v):
    bad = [t for t in v if t not in INGRESS_TOPICS]
    if bad:
        raise ValueError(f"topics {bad} cannot come through the ingress; allowed: {list(INGRESS_TOPICS)}")
    return v


class IngressClient(BaseModel):
    """One remote producer: its CurveZMQ public key is ``<bus.curve_keys>/<name>.key``."""

    model_config = ConfigDict(extra="forbid")

    topics: list[str] = Field(default_factory=lambda: [M.Task.TOPIC], description="topics this client may publish")

    @field_validator("topics")
    @classmethod
    def _topics(cls, v):
        return _check_topics(v)


class IngressConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(None, description="where outside producers connect (default "
                                                   "ipc://<bus.ipc_dir>/ingress-in.sock; tcp:// needs bus.curve_keys)")
    local_topics: list[str] = Field(default_factory=lambda: list(INGRESS_TOPICS),
                                    description="what a local (ipc) producer may publish: any process of the "
                                                "user who owns the bus directory")
    clients: dict[str, IngressClient] = Field(default_factory=dict,
                                              description="remote producers (tcp + CurveZMQ) and their topics")
    max_rate_hz: float = Field(1000.0, gt=0.0, le=100_000.0,
                               description="messages per second the ingress forwards at most (a flood is "
                                           "dropped and counted, the bus behind it is not flooded)")

    @field_validator("local_topics")
    @classmethod
    def _local(cls, v):
        return _check_topics(v)
