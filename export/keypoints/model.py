"""The exported keypoint model as the robot runs it: an ONNX file, its manifest, a session (no torch).

    from kinebridge.export.keypoints.model import load
    model = load()                               # the shipped model (export/keypoints/models/)
    out = model.run(rgb, depth)                  # rgb (H, W, 3) uint8, depth (H, W) float32 m
    dets = model.detect(rgb, depth)              # decoded objects (2D keypoints, depths)

The manifest (``<model>.json`` beside ``<model>.onnx``) is checked before the session starts:
the file's sha256 must equal the manifest's (a corrupt, truncated or swapped file is refused),
the graph's inputs must be the manifest's, and a frame of another size than the model's is refused
naming both sizes. Every failure is a :class:`ModelError` (a ``ValueError``) whose message says
which file and what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kinebridge.export.keypoints.decode import DecodeConfig, Detection2D, decode
from kinebridge.export.session import ModelFileError, Session, sha256_of

__all__ = ["ModelError", "KeypointModel", "load", "MODELS_DIR", "DEFAULT_MODEL", "MANIFEST_KIND"]

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "mug_kp.onnx"
MANIFEST_KIND = "kinebridge-keypoint-model"
OUTPUTS = ("centre", "kp_heat", "kp_offset", "kp_disp", "box", "kp_depth", "kp_vis", "depth_valid")


class ModelError(ModelFileError):
    """A keypoint model that cannot be used (missing, corrupt, mismatched); the message says why."""


def manifest_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


@dataclass
class KeypointModel:
    path: Path
    manifest: dict
    session: Session
    decode_cfg: DecodeConfig = field(default_factory=DecodeConfig)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.manifest["classes"])

    @property
    def keypoints(self) -> tuple[str, ...]:
        return tuple(self.manifest["keypoints"])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames the model takes."""
        return int(self.manifest["input"]["width"]), int(self.manifest["input"]["height"])

    @property
    def name(self) -> str:
        return f"{self.path.stem}@{self.manifest['sha256'][:12]}"

    def check_frame(self, width: int, height: int) -> None:
        W, H = self.size
        if (width, height) != (W, H):
            raise ModelError(f"{self.path.name} takes {W}×{H} frames, the camera gives {width}×{height}: configure "
                             f"the camera at {W}×{H}, or train/export a model for {width}×{height}")

    def run(self, rgb: np.ndarray, depth: np.ndarray) -> dict[str, np.ndarray]:
        """Raw network outputs for one RGB-D frame (batch of one)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb: expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        if depth.shape != rgb.shape[:2]:
            raise ValueError(f"depth {depth.shape} is not aligned to rgb {rgb.shape[:2]}")
        self.check_frame(rgb.shape[1], rgb.shape[0])
        d = depth if depth.dtype == np.float32 else depth.astype(np.float32)
        return self.session.run({"rgb": np.ascontiguousarray(rgb)[None], "depth": np.ascontiguousarray(d)[None]},
                                check=False)

    def detect(self, rgb: np.ndarray, depth: np.ndarray) -> list[Detection2D]:
        return decode(self.run(rgb, depth), self.decode_cfg)

    def describe(self) -> dict:
        m = self.manifest
        return {"path": str(self.path), "name": self.name, "sha256": m["sha256"], "classes": list(self.classes),
                "keypoints": list(self.keypoints), "input": m["input"], "session": self.session.describe()}


def read_manifest(path: Path) -> dict:
    mp = manifest_path(path)
    if not mp.is_file():
        raise ModelError(f"{path.name} has no manifest ({mp} missing); a model is only run with the manifest "
                         "`kinebridge export keypoints` wrote beside it")
    try:
        m = json.loads(mp.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"{mp} is not valid JSON ({exc}); re-export the model") from None
    if not isinstance(m, dict) or m.get("kind") != MANIFEST_KIND:
        raise ModelError(f"{mp} is not a keypoint model manifest (kind {m.get('kind') if isinstance(m, dict) else None!r}, "
                         f"expected {MANIFEST_KIND!r})")
    for key in ("sha256", "inputs", "outputs", "classes", "keypoints", "input"):
        if key not in m:
            raise ModelError(f"{mp} lacks {key!r}; re-export the model")
    return m


def load(path=None, *, providers="auto", threads: int = 2, spin: bool = False, decode_cfg: DecodeConfig | None = None,
         trt_cache=None) -> KeypointModel:
    """The model at ``path`` (default: the shipped one), checked against its manifest (module docstring)."""
    path = Path(path) if path is not None else DEFAULT_MODEL
    if not path.is_file():
        hint = ("the package's default model is missing — reinstall kinebridge" if path == DEFAULT_MODEL else
                "train and export one (`kinebridge train keypoints`, `kinebridge export keypoints`) or omit the path "
                "for the shipped model")
        raise ModelError(f"no keypoint model at {path}: {hint}")
    m = read_manifest(path)
    digest = sha256_of(path)
    if digest != m["sha256"]:
        raise ModelError(f"{path.name}: sha256 {digest[:16]}… differs from its manifest's {m['sha256'][:16]}… — the "
                         "file is corrupt, truncated or not the model the manifest describes; re-export it")
    try:
        session = Session(path, providers=providers, threads=threads, spin=spin, trt_cache=trt_cache)
    except ModelFileError as exc:
        raise ModelError(str(exc)) from None
    got = {i.name: i for i in session.inputs}
    for spec in m["inputs"]:
        i = got.get(spec["name"])
        if i is None or list(i.shape) != list(spec["shape"]) or i.dtype != spec["dtype"]:
            raise ModelError(f"{path.name}: the graph's input {spec['name']!r} is "
                             f"{None if i is None else (list(i.shape), i.dtype)}, its manifest says "
                             f"{(spec['shape'], spec['dtype'])}; the file and manifest do not belong together")
    missing = [o for o in OUTPUTS if o not in session.output_names]
    if missing:
        raise ModelError(f"{path.name}: outputs {missing} missing; not a kinebridge keypoint model")
    return KeypointModel(path=path, manifest=m, session=session, decode_cfg=decode_cfg or DecodeConfig())
