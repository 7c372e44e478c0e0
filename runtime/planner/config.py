"""The ``[planner]`` table (pydantic only: reading a config loads no planner, no openai)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["PlannerConfig"]


class PlannerConfig(BaseModel):
    """Which planner decides and how it is called.

    ``kind = "local"`` is the embedded offline planner (no endpoint); ``"openai"`` is any
    OpenAI-compatible endpoint — OpenAI itself, or a GPU server under vLLM (``http://host:8000/v1``),
    SGLang (``:30000/v1``) or TensorRT-LLM (``trtllm-serve``, ``:8000/v1``). The API key is read from
    the environment variable named by ``api_key_env`` when the planner starts; it is never written to
    a config, a log, a heartbeat or a recording."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "openai"] = "local"
    base_url: str | None = Field(None, description="the endpoint's /v1 URL (openai; unset: the OpenAI API)")
    model: str = Field("gpt-4o", min_length=1, max_length=200, description="model name at the endpoint (openai)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key (openai; "
                                                           "a local server without keys: any value, e.g. EMPTY)")
    timeout_s: float = Field(30.0, gt=0.0, le=600.0, description="one request's time limit (s)")
    retries: int = Field(2, ge=0, le=10, description="re-sends of a request that failed on the endpoint's side "
                                                     "(connection, timeout, 429, 5xx)")
    backoff_s: float = Field(0.5, ge=0.0, le=30.0, description="wait before the first re-send, doubled each time (s)")
    image: bool = Field(True, description="send the frame with candidate ids drawn (when the model takes images)")
    structured: Literal["auto", "json_schema", "json"] = Field(
        "auto", description="json_schema: structured outputs; json: schema in the prompt and validation; auto: "
                            "json_schema, falling back to json for a server that refuses it")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(1024, ge=64, le=32768, description="reply length limit per turn")
    decision_timeout_s: float = Field(120.0, gt=0.0, le=3600.0,
                                      description="an instruction not decided by then gets a failed decision (s)")
    candidates_max_age_s: float = Field(5.0, gt=0.0, le=3600.0,
                                        description="perception/keypoints older than this are not decided on (s)")
    candidates: Literal["perception", "world", "auto"] = Field(
        "perception", description="what the planner decides on: perception/keypoints, the simulated world's ground "
                                  "truth (world/truth: every object with its class, colour, size and keypoints), or "
                                  "auto: perception's when its latest message has an object with keypoints, else the "
                                  "world's")
    scene_seed: int | None = Field(None, ge=0, description="decide on this simulated scene's ground truth "
                                                           "(SceneSpec.random(seed, ambiguous=true); needs the "
                                                           "world extra) instead of perception/keypoints")
    dialogue_ttl_s: float = Field(600.0, gt=0.0, le=86400.0, description="a dialogue is forgotten after this (s)")

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, v):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", v):
            raise ValueError(f"api_key_env: expected the NAME of an environment variable (letters, digits, _), got "
                             f"{v[:8]!r}… — never put the key itself in the config")
        return v

    @field_validator("base_url")
    @classmethod
    def _url(cls, v):
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"base_url: expected http(s)://host[:port]/v1, got {v!r}")
        return v
