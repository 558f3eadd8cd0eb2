"""Where and how a run executes: device, mixed precision, seeds, RNG state, graceful stop."""

from __future__ import annotations

import random
import signal
import threading
from types import FrameType
from typing import Any

import numpy as np
import torch

from skincls.core.errors import SkinclsError


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if device == "cuda" and not torch.cuda.is_available():
        raise SkinclsError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16 (with a grad scaler); no AMP on CPU."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def compile_unavailable(device: torch.device) -> str | None:
    """Why ``torch.compile``'s default (inductor) backend cannot run on ``device``; None when
    it can."""
    import shutil

    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "inductor needs Triton for CUDA (pip install triton)"
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        return "inductor needs a C++ compiler on CPU (g++ or clang++ on PATH; apt install g++)"
    return None


def compile_backbone(model: torch.nn.Module, device: torch.device) -> None:
    """Compile ``model.backbone`` in place (``nn.Module.compile``: the state dict keeps its
    keys, so checkpoints are the same as eager ones); a clear error when it cannot run here."""
    reason = compile_unavailable(device) or compile_fails(device)
    if reason:
        raise SkinclsError(f"--compile on {device.type}: {reason}; or train without --compile")
    model.backbone.compile()  # type: ignore[union-attr,operator]


def compile_fails(device: torch.device) -> str | None:
    """Why inductor cannot build a tiny kernel on ``device`` (a compiler that is present but
    broken: missing headers, a bad ``CXX``), found in seconds before training rather than at
    the first step; None when it builds."""
    import torch._dynamo

    def tiny(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x * 2.0 + 1.0)

    try:
        tiny_compiled = torch.compile(tiny, fullgraph=True)
        tiny_compiled(torch.ones(8, device=device))
    except Exception as err:
        first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        return f"the compiler cannot build a test kernel ({first.strip()[:300]})"
    finally:
        torch._dynamo.reset()
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def seed_everything(seed: int, deterministic_cpu: bool = True, device: torch.device | None = None):
    """Seed Python, NumPy and torch; on CPU also ask torch for deterministic kernels, so an
    interrupted and resumed run ends with the same weights as an uninterrupted one."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic_cpu and (device is None or device.type == "cpu"):
        torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> dict[str, Any]:
    """The RNG states a resumed run needs, as tensors and plain lists (weights-only loadable)."""
    py = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": list(py[1]),
        "python_pos": py[2] if py[2] is not None else -1,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    pos = state.get("python_pos", -1)
    random.setstate((3, tuple(state["python"]), None if pos == -1 else pos))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class GracefulStop:
    """Context manager: the first SIGINT/SIGTERM asks the loop to stop at the next step (the
    loop calls :meth:`check`); a second one interrupts at once. Outside the main thread (a sweep
    run from a thread) signals are left alone."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._previous[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
