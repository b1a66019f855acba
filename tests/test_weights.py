"""Weights specs -> files: registry names (downloaded from a 127.0.0.1 server into a temp cache),
bundled files, paths, URLs, offline use, and the `invrep weights` commands."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from invrep_cli import weights
from invrep_cli.checkpoint import load_restorer
from invrep_cli.cli import app
from invrep_cli.errors import WeightsError
from tests.localserver import FileServer, closed_port_url, sha


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path / "home"))
    return tmp_path / "home"


def write_registry(path: Path, entries: list[dict], monkeypatch: pytest.MonkeyPatch) -> Path:
    path.write_text(json.dumps(entries), encoding="utf-8")
    monkeypatch.setenv(weights.REGISTRY_ENV, str(path))
    return path


@pytest.fixture
def registry(
    tmp_path: Path, home: Path, server: FileServer, weights_bytes: bytes, monkeypatch: pytest.MonkeyPatch
) -> list[dict]:
    bundled = tmp_path / "shipped" / "tiny-bundled.safetensors"
    bundled.parent.mkdir()
    bundled.write_bytes(weights_bytes)
    entries = [
        {
            "name": "tiny-bundled",
            "bundled": True,
            "file": str(bundled),
            "sha256": sha(weights_bytes),
            "description": "shipped with the package",
        },
        {
            "name": "tiny-remote",
            "url": server.url,
            "sha256": sha(weights_bytes),
            "size": len(weights_bytes),
            "file": "tiny-remote.safetensors",
            "description": "downloaded on first use",
        },
        {"name": "missing-bundled", "bundled": True, "file": "weights/does-not-exist.safetensors", "sha256": ""},
    ]
    write_registry(tmp_path / "registry.json", entries, monkeypatch)
    return entries


def test_packaged_registry_has_the_bundled_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(weights.REGISTRY_ENV, raising=False)
    entries = {e["name"]: e for e in weights.load_registry()}
    default = entries[weights.DEFAULT_WEIGHTS]
    assert default["bundled"] and default["file"] == f"weights/{weights.DEFAULT_WEIGHTS}.safetensors"
    assert weights._bundled_path(default) == weights.bundled_dir() / f"{weights.DEFAULT_WEIGHTS}.safetensors"


def test_cache_dir_follows_invrep_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert weights.cache_dir() == home / "weights"
    monkeypatch.delenv(weights.HOME_ENV)
    assert weights.cache_dir().name == "weights" and "invrep" in str(weights.cache_dir())


def test_registry_name_downloads_once_then_works_offline(
    registry: list[dict], server: FileServer, weights_bytes: bytes, home: Path
) -> None:
    assert {r["name"]: r["cached"] for r in weights.list_weights()} == {
        "tiny-bundled": True,
        "tiny-remote": False,
        "missing-bundled": False,
    }
    got = weights.locate_weights("tiny-remote")
    assert got.downloaded and got.source == "registry"
    assert got.path == home / "weights" / "tiny-remote.safetensors"
    assert got.path.read_bytes() == weights_bytes
    assert (home / "weights" / "tiny-remote.safetensors.sha256").read_text().strip() == sha(weights_bytes)
    restorer, _ = load_restorer(got.path)
    assert restorer.config.width == 4

    server.stop()
    assert weights.resolve_weights("tiny-remote") == got.path
    assert weights.resolve_weights("tiny-remote", offline=True) == got.path
    assert server.state.ranges == [None]  # one request in all
    assert {r["name"]: r["cached"] for r in weights.list_weights()}["tiny-remote"] is True


def test_offline_without_cache_fails(registry: list[dict], server: FileServer) -> None:
    with pytest.raises(WeightsError, match="not cached.*invrep weights download tiny-remote"):
        weights.resolve_weights("tiny-remote", offline=True)
    assert server.state.ranges == []


def test_tampered_cache_is_rehashed_and_downloaded_again(
    registry: list[dict], server: FileServer, weights_bytes: bytes
) -> None:
    path = weights.resolve_weights("tiny-remote")
    # same size, other bytes, no record: the one full hash finds it and the file is fetched again
    path.write_bytes(bytes(len(weights_bytes)))
    weights._sidecar(path).unlink()
    assert weights.resolve_weights("tiny-remote").read_bytes() == weights_bytes
    assert len(server.state.ranges) == 2


def test_registry_digest_change_triggers_new_download(
    registry: list[dict], server: FileServer, weights_bytes: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights.resolve_weights("tiny-remote")
    new = bytearray(weights_bytes)
    new[-1] ^= 0x01  # retrained weights of the same size
    server.state.body = bytes(new)
    registry[1]["sha256"] = sha(bytes(new))
    write_registry(tmp_path / "registry.json", registry, monkeypatch)
    assert weights.resolve_weights("tiny-remote").read_bytes() == bytes(new)


def test_bundled_default_and_paths(registry: list[dict], weights_bytes: bytes, tmp_path: Path) -> None:
    bundled = Path(registry[0]["file"])
    got = weights.locate_weights(None)  # no lir-lite-gauss here: the first bundled entry
    assert got.path == bundled and got.source == "bundled" and not got.downloaded
    assert weights.resolve_weights("tiny-bundled") == bundled
    assert weights.resolve_weights(str(bundled)) == bundled
    with pytest.raises(WeightsError, match="weights file not found"):
        weights.resolve_weights(str(tmp_path / "nope.safetensors"))
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(WeightsError, match="not a weights file"):
        weights.resolve_weights(str(other))


def test_bundled_file_with_wrong_digest_is_refused(registry: list[dict]) -> None:
    Path(registry[0]["file"]).write_bytes(b"retrained but registry not updated")
    with pytest.raises(WeightsError, match="do not match the registry"):
        weights.resolve_weights("tiny-bundled")


def test_missing_bundled_file_is_a_clear_error(registry: list[dict], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(WeightsError, match="bundled weights 'missing-bundled' not found.*does-not-exist"):
        weights.resolve_weights("missing-bundled")
    monkeypatch.setattr(weights, "is_source_checkout", lambda: False)
    with pytest.raises(WeightsError, match="pip-installed"):
        weights.resolve_weights("missing-bundled")


def test_unknown_name_lists_registry(registry: list[dict]) -> None:
    with pytest.raises(WeightsError) as info:
        weights.resolve_weights("no-such-weights")
    assert "tiny-bundled, tiny-remote, missing-bundled" in str(info.value)


def test_url_spec_with_sha256_fragment(server: FileServer, weights_bytes: bytes, home: Path) -> None:
    got = weights.locate_weights(f"{server.url}#sha256={sha(weights_bytes)}")
    assert got.downloaded and got.path.name == "tiny.safetensors"
    assert got.path.parent.parent == home / "weights" / "urls"
    assert got.path.read_bytes() == weights_bytes
    server.stop()
    assert weights.resolve_weights(f"{server.url}#sha256={sha(weights_bytes)[:12]}", offline=True) == got.path
    with pytest.raises(WeightsError, match="not cached"):
        weights.resolve_weights(server.url.replace("tiny", "other"), offline=True)


def test_url_spec_with_wrong_digest(server: FileServer, home: Path) -> None:
    with pytest.raises(WeightsError, match="corrupt"):
        weights.resolve_weights(f"{server.url}#sha256={'0' * 64}")
    assert not any(p.is_file() for p in (home / "weights").rglob("*"))


def test_bad_registries_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    monkeypatch.setenv(weights.REGISTRY_ENV, str(bad))
    with pytest.raises(WeightsError, match="not valid JSON"):
        weights.load_registry()
    write_registry(bad, [{"name": "x", "url": "https://example.invalid/x.safetensors"}], monkeypatch)
    with pytest.raises(WeightsError, match="needs its 'sha256'"):
        weights.load_registry()
    entry = {"name": "x", "url": "https://example.invalid/x.safetensors", "sha256": "a" * 64, "file": "../x.pt"}
    write_registry(bad, [entry], monkeypatch)
    with pytest.raises(WeightsError, match="plain file name"):
        weights.load_registry()


runner = CliRunner()


def test_cli_list_json(registry: list[dict]) -> None:
    result = runner.invoke(app, ["weights", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)["weights"]}
    assert set(rows) == {"tiny-bundled", "tiny-remote", "missing-bundled"}
    assert rows["tiny-remote"]["cached"] is False and rows["tiny-remote"]["size"] == registry[1]["size"]
    assert rows["tiny-bundled"]["bundled"] is True and rows["tiny-bundled"]["cached"] is True
    table = runner.invoke(app, ["weights", "list"])
    assert table.exit_code == 0 and "tiny-remote" in table.stdout


def test_cli_download(registry: list[dict], server: FileServer, weights_bytes: bytes, home: Path) -> None:
    result = runner.invoke(app, ["weights", "download", "tiny-remote", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["downloaded"] is True and out["sha256"] == sha(weights_bytes) and out["size"] == len(weights_bytes)
    assert Path(out["path"]) == home / "weights" / "tiny-remote.safetensors"
    again = runner.invoke(app, ["weights", "download", "tiny-remote", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["downloaded"] is False
    quiet = runner.invoke(app, ["weights", "download", "tiny-remote", "--force", "--quiet"])
    assert quiet.exit_code == 0 and quiet.stdout == ""
    assert len(server.state.ranges) == 2
    assert hashlib.sha256(Path(out["path"]).read_bytes()).hexdigest() == sha(weights_bytes)


def test_cli_download_failures_exit_2(registry: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = runner.invoke(app, ["weights", "download", "no-such-weights"])
    assert unknown.exit_code == 2 and "unknown weights 'no-such-weights'" in unknown.stderr
    registry[1]["url"] = closed_port_url()
    write_registry(tmp_path / "registry.json", registry, monkeypatch)
    failed = runner.invoke(app, ["weights", "download", "tiny-remote"])
    assert failed.exit_code == 2
    assert registry[1]["url"] in failed.stderr.replace("\n", "")


def test_list_says_what_each_model_is_for_and_restore_picks_one_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two bundled models, as the shipped registry has (Gaussian and real noise): `weights list`
    shows each with its description and marks the default; `restore --weights NAME` runs that one."""
    import torch

    from invrep_cli.checkpoint import save_restorer
    from invrep_cli.config import ModelConfig
    from invrep_cli.models.restorer import Restorer
    from tests.conftest import write_images

    monkeypatch.setenv(weights.HOME_ENV, str(tmp_path / "home"))
    tiny = ModelConfig(name="tiny", width=4, n_res_blocks=1, disc_width=4, disc_scales=2, disc_layers=2)
    entries = []
    for seed, name, use in ((0, "tiny-gauss", "for Gaussian noise"), (1, "tiny-real", "for camera noise [JPEG]")):
        torch.manual_seed(seed)
        path = save_restorer(Restorer(tiny).eval(), tmp_path / f"{name}.safetensors")
        entries.append({"name": name, "bundled": True, "file": str(path), "sha256": sha(path.read_bytes()),
                        "description": use})
    write_registry(tmp_path / "registry.json", entries, monkeypatch)

    listed = runner.invoke(app, ["weights", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.stdout)["weights"]}
    assert {n: (r["description"], r["default"]) for n, r in rows.items()} == {
        "tiny-gauss": ("for Gaussian noise", True),  # no lir-unet-gauss here: the first bundled entry
        "tiny-real": ("for camera noise [JPEG]", False)}
    table = runner.invoke(app, ["weights", "list"])  # piped: one whole line per model
    lines = {line.split()[0]: line for line in table.stdout.splitlines() if line.startswith("tiny-")}
    assert lines["tiny-gauss"].split()[:2] == ["tiny-gauss", "yes"]
    assert lines["tiny-gauss"].endswith("for Gaussian noise")
    assert "bundled" in lines["tiny-real"] and lines["tiny-real"].endswith("for camera noise [JPEG]")

    write_images(tmp_path / "in", 1, size=(32, 32))
    outputs = {}
    for name in ("tiny-real", "tiny-gauss"):
        result = runner.invoke(app, ["restore", str(tmp_path / "in"), str(tmp_path / name), "--weights", name,
                                     "--device", "cpu", "--threads", "1", "--json"])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["weights"] == str(tmp_path / f"{name}.safetensors")
        outputs[name] = (tmp_path / name / "img_000.png").read_bytes()
    assert outputs["tiny-real"] != outputs["tiny-gauss"]  # two networks, two results
