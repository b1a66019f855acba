"""The torch backend: device/precision policy, metadata margin, fp32 fallback; margin measurement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from invrep_cli.backends import (
    TorchBackend,
    available_ram,
    is_out_of_memory,
    make_backend,
    measure_context_margin,
    theoretical_margin,
)
from invrep_cli.checkpoint import load_restorer, save_restorer
from invrep_cli.config import ModelConfig
from invrep_cli.devices import cpu_bf16_unsupported
from invrep_cli.errors import DeviceError, UsageError
from invrep_cli.models import build_restorer, receptive_field


@pytest.fixture
def weights(tmp_path: Path, tiny_config: ModelConfig) -> Path:
    torch.manual_seed(0)
    return save_restorer(build_restorer(tiny_config), tmp_path / "w.safetensors")


def test_torch_backend_on_cpu_matches_restorer(weights: Path, tiny_config: ModelConfig) -> None:
    backend = make_backend(weights, device="cpu", precision="fp32", threads=1)
    assert backend.name == "torch" and backend.device.startswith("cpu") and backend.precision == "fp32"
    assert backend.size_multiple == 4
    assert backend.context_margin == theoretical_margin(receptive_field(tiny_config), 4) == 36
    x = np.random.default_rng(0).random((2, 3, 16, 24), dtype=np.float32)
    y = backend.run(x)
    restorer, _ = load_restorer(weights)
    with torch.no_grad():
        ref = restorer(torch.from_numpy(x)).numpy()
    assert y.dtype == np.float32 and y.shape == x.shape and np.array_equal(y, ref)
    gray = backend.run(x[:, :1])
    assert gray.shape == (2, 1, 16, 24) and 0.0 <= gray.min() <= gray.max() <= 1.0


def test_margin_from_weights_metadata(tmp_path: Path, tiny_config: ModelConfig) -> None:
    path = save_restorer(build_restorer(tiny_config), tmp_path / "m.safetensors", meta={"context_margin": 12})
    assert make_backend(path, device="cpu").context_margin == 12


def test_precision_and_device_policy(weights: Path) -> None:
    with pytest.raises(UsageError, match="fp16 on CPU"):
        make_backend(weights, device="cpu", precision="fp16")
    with pytest.raises(UsageError, match="--precision"):
        make_backend(weights, device="cpu", precision="int8")
    with pytest.raises(UsageError, match="--backend"):
        make_backend(weights, backend="tensorrt")
    with pytest.raises(UsageError, match="ONNX"):
        make_backend(weights.with_suffix(".onnx"), backend="torch")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError):
            make_backend(weights, device="cuda")
        assert make_backend(weights, device="auto").device.startswith("cpu")


def test_bf16_on_cpu_refused_without_bf16_instructions(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import invrep_cli.devices as devices

    monkeypatch.setattr(devices, "cpu_flags", lambda: {"sse4_2", "avx2", "avx512f"})
    assert devices.cpu_bf16_unsupported() is not None
    with pytest.raises(UsageError, match="bf16 on CPU is refused: this processor has no bf16 instructions"):
        make_backend(weights, device="cpu", precision="bf16")
    assert make_backend(weights, device="cpu").precision == "fp32"  # auto stays fp32 on CPU
    monkeypatch.setattr(devices, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert devices.cpu_bf16_unsupported() is None


@pytest.mark.skipif(bool(cpu_bf16_unsupported()), reason=f"no CPU bf16: {cpu_bf16_unsupported()}")
def test_bf16_on_cpu_close_to_fp32(weights: Path) -> None:
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    fp32 = make_backend(weights, device="cpu", precision="fp32").run(x)
    bf16 = make_backend(weights, device="cpu", precision="bf16")
    assert bf16.precision == "bf16" and bf16.model is not bf16.model_fp32
    y = bf16.run(x)
    # bf16 keeps 8 significant bits; a random width-4 net (per-pixel norms over 4 channels) is a
    # worst case, so the bound on the largest difference is loose and the mean one tight
    assert y.dtype == np.float32 and np.abs(y - fp32).max() < 0.1 and np.abs(y - fp32).mean() < 2 / 255


def test_half_precision_nan_is_recomputed_in_fp32(weights: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import invrep_cli.devices as devices

    monkeypatch.setattr(devices, "cpu_bf16_unsupported", lambda: None)  # the fallback logic, on any CPU
    warnings: list[str] = []
    backend = TorchBackend(weights, device="cpu", precision="bf16", on_warning=warnings.append)

    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x, float("nan"))

    backend.model = Broken()
    x = np.random.default_rng(2).random((1, 3, 16, 16), dtype=np.float32)
    y = backend.run(x)
    assert np.isfinite(y).all() and np.array_equal(y, make_backend(weights, device="cpu", precision="fp32").run(x))
    assert len(warnings) == 1 and "fp32" in warnings[0] and backend.precision == "bf16"
    backend.run(x)
    backend.run(x)  # the third fallback: half precision is given up for the rest of the run
    assert backend.precision == "fp32" and "switching to fp32" in warnings[-1]


def _box_blur(radius: int):  # noqa: ANN202
    """A filter whose receptive field is exactly 2 * radius + 1, with reflect borders."""

    def run(batch: np.ndarray) -> np.ndarray:
        if radius == 0:
            return batch.copy()
        padded = np.pad(batch, ((0, 0), (0, 0), (radius, radius), (radius, radius)), mode="reflect")
        out = np.zeros_like(batch)
        h, w = batch.shape[-2:]
        for dy in range(2 * radius + 1):
            for dx in range(2 * radius + 1):
                out += padded[..., dy : dy + h, dx : dx + w]
        return out / (2 * radius + 1) ** 2

    return run


@pytest.mark.parametrize(("radius", "expected"), [(0, 0), (3, 4), (5, 8), (8, 8)])
def test_measure_context_margin_finds_the_field(radius: int, expected: int) -> None:
    assert measure_context_margin(_box_blur(radius), 4, tol=1e-6, max_margin=16) == expected


def test_measured_margin_of_a_restorer_is_within_theory(weights: Path) -> None:
    backend = make_backend(weights, device="cpu")
    measured = measure_context_margin(backend.run, 4, tol=0.5 / 255, max_margin=backend.context_margin)
    assert 0 < measured <= backend.context_margin


def test_helpers() -> None:
    assert available_ram() > 0
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_out_of_memory(RuntimeError("[ONNXRuntimeError] : 6 : Failed to allocate memory for requested buffer"))
    assert not is_out_of_memory(ValueError("bad shape"))
    assert theoretical_margin(72, 4) == 36 and theoretical_margin(73, 4) == 40
