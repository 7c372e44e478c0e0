"""One inference-session abstraction for every exported model kinebridge runs (ONNX Runtime; no torch).

    s = Session("model.onnx", threads=2)          # providers="auto": TensorRT > CUDA > CPU
    s.provider, s.reason                          # which execution provider it got, and why
    s.skipped                                     # [(provider, why it was not used), ...]
    outputs = s.run({"rgb": rgb, "depth": depth}) # name → array; inputs checked by name, dtype, shape

Provider choice. ``"auto"`` tries, in order,

1. **TensorRT** — needs ``TensorrtExecutionProvider`` in this onnxruntime build (the
   ``onnxruntime-gpu`` wheel of the ``gpu`` extra; the CPU wheel has none), an NVIDIA driver with a
   device (``libcuda.so.1``, ``cuDeviceGetCount`` > 0) and the TensorRT libraries; engines are built
   once and cached (``trt_engine_cache_path``, default ``~/.cache/kinebridge/tensorrt/<model sha256>``
   or ``$KINEBRIDGE_TRT_CACHE``), with a timing cache beside them, so a restart does not rebuild;
2. **CUDA** — the same build and device checks;
3. **CPU** — always present.

A provider that is skipped says why (not in the build, no device, failed to initialise — ONNX
Runtime falls back to CPU silently when the CUDA libraries are missing, so the session checks
which provider the created session really runs and reports a fallback as such). ``providers``
may also name one provider or a list, in which case only those are tried.

Threads are always set explicitly: ``intra_op_num_threads = threads`` (default 2, the robot PC's
budget for perception), one inter-op thread, sequential execution, and thread spinning off by
default (``spin=False``) — a spinning pool burns the cores the control loop and the camera share.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Session", "SessionError", "ModelFileError", "PROVIDER_ORDER", "cuda_devices", "sha256_of",
           "available_providers"]

PROVIDER_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
_SHORT = {"tensorrt": "TensorrtExecutionProvider", "trt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider",
          "cpu": "CPUExecutionProvider"}


class SessionError(RuntimeError):
    """ONNX Runtime is missing or no requested execution provider could run the model."""


class ModelFileError(ValueError):
    """The model file is missing, unreadable or not a valid ONNX model; the message names the file."""


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:      # pragma: no cover - the perception extra installs it
        raise SessionError("onnxruntime is not installed: pip install 'kinebridge[perception]' (CPU) or "
                           "'kinebridge[gpu]' (TensorRT/CUDA)") from exc
    return ort


def available_providers() -> list[str]:
    return list(_ort().get_available_providers())


def cuda_devices() -> tuple[int, str]:
    """(number of CUDA devices, why none) from the NVIDIA driver, without torch or the CUDA runtime."""
    import ctypes
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0, "no NVIDIA driver on this machine (libcuda.so.1 not found)"
    if lib.cuInit(0) != 0:
        return 0, "the NVIDIA driver is present but cuInit failed (no usable GPU, or the device is busy/reset)"
    n = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(n)) != 0 or n.value == 0:
        return 0, "the NVIDIA driver reports no CUDA device"
    return int(n.value), ""


@dataclass(frozen=True)
class IOSpec:
    name: str
    shape: tuple          # ints, or str for symbolic dimensions
    dtype: str            # numpy dtype name

    def describe(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


_ORT_TYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int64)": "int64", "tensor(int32)": "int32",
              "tensor(float16)": "float16", "tensor(double)": "float64", "tensor(bool)": "bool"}


def _io(args) -> tuple[IOSpec, ...]:
    return tuple(IOSpec(a.name, tuple(d if isinstance(d, int) else str(d) for d in a.shape),
                        _ORT_TYPES.get(a.type, a.type)) for a in args)


class Session:
    """An ONNX Runtime session on the best available execution provider (see the module docstring)."""

    def __init__(self, path, *, providers="auto", threads: int = 2, spin: bool = False, trt_cache=None,
                 trt_fp16: bool = False, log_severity: int = 3):
        ort = _ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"model file {self.path} does not exist")
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 64:
            raise ValueError(f"threads: expected an integer in 1..64, got {threads!r}")
        self.threads = threads
        wanted = self._wanted(providers)
        available = set(ort.get_available_providers())
        self.skipped: list[tuple[str, str]] = []
        self._sha = None
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = log_severity
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
        self.spin = spin
        n_gpu, why_no_gpu = (0, "")
        if any(p != "CPUExecutionProvider" for p in wanted):
            n_gpu, why_no_gpu = cuda_devices()
        self.trt_cache: Path | None = None
        self._session = None
        self.provider = ""
        self.reason = ""
        for p in wanted:
            if p not in available:
                self.skipped.append((p, f"not in this onnxruntime build (it has {', '.join(sorted(available))}); "
                                        "TensorRT and CUDA come with onnxruntime-gpu: pip install 'kinebridge[gpu]'"))
                continue
            if p != "CPUExecutionProvider" and n_gpu == 0:
                self.skipped.append((p, why_no_gpu))
                continue
            opts = {}
            if p == "TensorrtExecutionProvider":
                cache = self._trt_cache_dir(trt_cache)
                opts = {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                        "trt_timing_cache_enable": True, "trt_timing_cache_path": str(cache),
                        "trt_fp16_enable": bool(trt_fp16)}
            chain = [(p, opts)] if opts else [p]
            try:
                s = ort.InferenceSession(str(self.path), so, providers=chain)
            except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
                text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                if "INVALID_PROTOBUF" in str(exc) or "INVALID_GRAPH" in str(exc) or "Load model" in str(exc) \
                        or "protobuf parsing failed" in str(exc).lower():
                    raise ModelFileError(f"{self.path} is not a valid ONNX model ({text}); the file is corrupt "
                                         "or truncated — re-export it or reinstall the package") from None
                self.skipped.append((p, f"failed to initialise: {text}"))
                continue
            got = s.get_providers()[0] if s.get_providers() else ""
            if got != p:
                self.skipped.append((p, f"onnxruntime fell back to {got} (libraries for {p} missing: "
                                        "CUDA 12/13, cuDNN 9, TensorRT — see the onnxruntime-gpu requirements)"))
                if got == "CPUExecutionProvider" and "CPUExecutionProvider" in wanted:
                    pass
                continue
            if p == "TensorrtExecutionProvider":
                self.trt_cache = Path(opts["trt_engine_cache_path"])
            self._session, self.provider = s, p
            break
        if self._session is None:
            tried = "; ".join(f"{p}: {why}" for p, why in self.skipped)
            raise SessionError(f"no execution provider could run {self.path.name} ({tried})")
        first = PROVIDER_ORDER[0] if providers == "auto" else wanted[0]
        if self.provider == first:
            self.reason = f"{self.provider}: the first choice" + (" (TensorRT > CUDA > CPU)" if providers == "auto" else "")
        else:
            groups: dict[str, list[str]] = {}
            for p, why in self.skipped:
                groups.setdefault(why, []).append(p.replace("ExecutionProvider", ""))
            self.reason = f"{self.provider}, because " + "; ".join(
                f"{' and '.join(ps)} {'were' if len(ps) > 1 else 'was'} skipped: {why}" for why, ps in groups.items())
        self.inputs = _io(self._session.get_inputs())
        self.outputs = _io(self._session.get_outputs())
        self.output_names = [o.name for o in self.outputs]

    @staticmethod
    def _wanted(providers) -> list[str]:
        if providers == "auto" or providers is None:
            return list(PROVIDER_ORDER)
        names = [providers] if isinstance(providers, str) else list(providers)
        out = []
        for n in names:
            full = _SHORT.get(str(n).lower(), n)
            if full not in PROVIDER_ORDER:
                raise ValueError(f"providers: unknown execution provider {n!r}; use auto, tensorrt, cuda or cpu")
            out.append(full)
        if not out:
            raise ValueError("providers: give at least one execution provider (or 'auto')")
        return out

    def _trt_cache_dir(self, trt_cache) -> Path:
        if trt_cache is not None:
            d = Path(trt_cache)
        else:
            root = os.environ.get("KINEBRIDGE_TRT_CACHE") or Path.home() / ".cache" / "kinebridge" / "tensorrt"
            self._sha = self._sha or sha256_of(self.path)
            d = Path(root) / self._sha[:16]
        d.mkdir(parents=True, exist_ok=True)
        return d

    # ------------------------------------------------------------------------------- running
    def check_feed(self, feed: dict) -> None:
        names = {i.name for i in self.inputs}
        if set(feed) != names:
            raise ValueError(f"{self.path.name}: inputs {sorted(feed)} given, the model takes {sorted(names)}")
        for spec in self.inputs:
            a = feed[spec.name]
            if not isinstance(a, np.ndarray):
                raise ValueError(f"{self.path.name}: input {spec.name!r} must be a numpy array")
            if a.dtype.name != spec.dtype:
                raise ValueError(f"{self.path.name}: input {spec.name!r} is {a.dtype}, the model takes {spec.dtype}")
            if len(a.shape) != len(spec.shape) or any(isinstance(d, int) and d != n for d, n in zip(spec.shape, a.shape)):
                raise ValueError(f"{self.path.name}: input {spec.name!r} has shape {tuple(a.shape)}, the model "
                                 f"takes {tuple(spec.shape)}")

    def run(self, feed: dict, check: bool = True) -> dict[str, np.ndarray]:
        """Run the model; returns output name → array."""
        if check:
            self.check_feed(feed)
        return dict(zip(self.output_names, self._session.run(self.output_names, feed)))

    def describe(self) -> dict:
        return {"path": str(self.path), "provider": self.provider, "reason": self.reason,
                "skipped": [{"provider": p, "reason": r} for p, r in self.skipped], "threads": self.threads,
                "spin": self.spin, "trt_cache": None if self.trt_cache is None else str(self.trt_cache),
                "inputs": [i.describe() for i in self.inputs], "outputs": [o.describe() for o in self.outputs]}
