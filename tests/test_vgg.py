"""VGG19 features: torchvision key layout, loading, and the lookup order with a local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from invrep_cli.errors import WeightsError
from invrep_cli.vgg import VGG19Features, load_vgg_features, resolve_vgg

# torchvision vgg19().features indices of conv1_1 .. conv4_1
TORCHVISION_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19]


def fake_vgg_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = VGG19Features().state_dict()
    state = {k: torch.randn_like(v) * 0.05 for k, v in state.items()}
    # torchvision files hold the classifier and deeper layers too; they must be ignored
    state["features.21.weight"] = torch.zeros(512, 512, 3, 3)
    state["classifier.0.weight"] = torch.zeros(4, 4)
    return state


@pytest.fixture(scope="session")
def fake_vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("vgg")
    tmp = folder / "tmp.pth"
    torch.save(fake_vgg_state(), tmp)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    # named like torchvision's files, so the hash-prefix check applies to it
    path = folder / f"vgg19-{digest[:8]}.pth"
    tmp.rename(path)
    return path


@pytest.fixture
def http_server(fake_vgg_file: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(fake_vgg_file.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVREP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("INVREP_VGG_WEIGHTS", raising=False)
    monkeypatch.setenv("INVREP_VGG_URL", f"http://127.0.0.1:{_closed_port()}/vgg19-dcbb9e9d.pth")


def test_state_dict_keys_match_torchvision_layout() -> None:
    keys = set(VGG19Features().state_dict())
    assert keys == {f"features.{i}.{p}" for i in TORCHVISION_CONV_INDICES for p in ("weight", "bias")}


def test_features_shape_and_normalisation(fake_vgg_file: Path) -> None:
    model = load_vgg_features(fake_vgg_file)
    assert not any(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = model(x)
    assert feats.shape == (2, 512, 4, 4)  # conv4_1 after three poolings
    # the ImageNet normalisation is applied to [0, 1] RGB: a mid-gray input maps to (0.5 - mean) / std
    seen: list[torch.Tensor] = []
    handle = model.features[0].register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    model(torch.zeros(1, 3, 8, 8))
    handle.remove()
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(seen[0][0, :, 0, 0], expected, atol=1e-6)


def test_loads_weights_exactly(fake_vgg_file: Path) -> None:
    model = load_vgg_features(fake_vgg_file)
    state = torch.load(fake_vgg_file, weights_only=True)
    assert torch.equal(model.features[19].weight, state["features.19.weight"])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_vgg_features(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError):
        load_vgg_features(junk)
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsError, match="not torchvision VGG19"):
        load_vgg_features(wrong)


def test_explicit_path_and_env(fake_vgg_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    res = resolve_vgg(str(fake_vgg_file))
    assert res.module is not None and "--vgg-weights" in (res.source or "")
    monkeypatch.setenv("INVREP_VGG_WEIGHTS", str(fake_vgg_file))
    res = resolve_vgg(None)
    assert res.module is not None and "INVREP_VGG_WEIGHTS" in (res.source or "")
    # an explicitly named file that is missing is an error, not a silent fallback
    with pytest.raises(WeightsError):
        resolve_vgg(str(tmp_path / "nope.pth"))


def test_download_from_local_server(
    http_server: str, fake_vgg_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("INVREP_VGG_URL", f"{http_server}/{fake_vgg_file.name}")
    seen: list[int] = []
    res = resolve_vgg(None, progress=lambda done, total: seen.append(done))
    assert res.module is not None and (res.source or "").startswith("downloaded")
    cached = tmp_path / "home" / fake_vgg_file.name
    assert cached.read_bytes() == fake_vgg_file.read_bytes()
    assert seen and seen[-1] == fake_vgg_file.stat().st_size
    # second lookup: from the cache, no server needed
    monkeypatch.setenv("INVREP_VGG_URL", f"http://127.0.0.1:{_closed_port()}/{fake_vgg_file.name}")
    res = resolve_vgg(None)
    assert res.module is not None and (res.source or "").startswith("cache")


def test_download_hash_prefix_mismatch(http_server: str, fake_vgg_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the file name claims a hash prefix the bytes do not have
    bad = fake_vgg_file.parent / "vgg19-00000000.pth"
    bad.write_bytes(fake_vgg_file.read_bytes())
    monkeypatch.setenv("INVREP_VGG_URL", f"{http_server}/{bad.name}")
    res = resolve_vgg(None)
    assert res.module is None
    assert "sha256" in res.reason


def test_server_absent_disables_with_reason() -> None:
    res = resolve_vgg(None, timeout=5)
    assert res.module is None
    assert "INVREP_VGG_WEIGHTS unset" in res.reason
    assert "not in cache" in res.reason
    assert "127.0.0.1" in res.reason  # names the URL that failed
