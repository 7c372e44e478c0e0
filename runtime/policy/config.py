"""The ``[policy]`` table: the token decoder and the policy node (pydantic only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PolicyConfig"]


class PolicyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokenizer: str = Field("out/tokenizer/bi-level-rvq",
                           description="the tokenizer folder the decoder loads (manifest.json + decoder files, from "
                                       "`kinebridge train tokenizer`)")
    backend: Literal["compiled", "onnx"] = Field("compiled", description="decoder: the compiled numba decoder or "
                                                                        "ONNX Runtime (both without torch)")
    max_obs_age_s: float = Field(0.3, gt=0.0, le=5.0,
                                 description="tokens for an observation older than this at arrival are refused "
                                             "(a chunk covers 0.5 s from its observation)")
    max_future_s: float = Field(0.05, ge=0.0, le=1.0, description="tokens stamped this far after now are refused")
    max_anchor_error_rad: float = Field(0.1, gt=0.0, le=3.2,
                                        description="a q_obs further than this from the commanded joints at obs_ns "
                                                    "is refused (the chunk would be anchored elsewhere)")
    state_history_s: float = Field(5.0, gt=0.1, le=60.0, description="control/state kept to anchor tokens without q_obs")
    producer: Literal["replay-tokens"] = Field("replay-tokens", description="what the policy node runs")
    dataset: str | None = Field(None, description="replay-tokens: the Kine data set whose tokens are streamed")
    episode: int | None = Field(None, ge=0, description="replay-tokens: the episode (default: the first held-out "
                                                        "kine episode)")
    latency_s: float = Field(0.0, ge=0.0, le=1.0,
                             description="replay-tokens: stamp each observation this long before its tokens leave "
                                         "(a policy's inference time)")
    start_delay_s: float = Field(0.3, ge=0.0, le=30.0, description="replay-tokens: wait after the decoder is ready")
