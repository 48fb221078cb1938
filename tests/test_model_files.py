"""Model-file layouts, resolution and downloads (joyvasa_core.model_files), without network."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.utils import are_progress_bars_disabled

from joyvasa_core import model_files as mf
from joyvasa_core.checkpoints import CheckpointError

LP = ["appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator"]


def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _all_entries() -> list[mf.ModelFile]:
    out = []
    for variant in mf.VARIANTS:
        for layout in ("official", "kijai"):
            out += mf.liveportrait_files(variant, layout).values()
    out += [*mf.cropper_files().values(), *mf.joyvasa_files().values()]
    for name in mf.AUDIO_ENCODER_REPOS:
        out += mf.audio_encoder_files(name).values()
    return out


def test_default_models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(mf.MODELS_DIR_ENV, str(tmp_path / "w"))
    assert mf.default_models_dir() == tmp_path / "w"
    monkeypatch.delenv(mf.MODELS_DIR_ENV)
    assert mf.default_models_dir() == Path.home() / ".cache/joyvasa/pretrained_weights"


def test_official_layout_paths():
    human = mf.liveportrait_files("human")
    animal = mf.liveportrait_files("animal")
    for slot in LP:
        assert human[slot].relpath == f"liveportrait/base_models/{slot}.pth"
        assert animal[slot].relpath == f"liveportrait_animals/base_models/{slot}.pth"
        assert human[slot].repo_id == "KwaiVGI/LivePortrait"
        assert human[slot].also == (f"{slot}.safetensors",)
        assert animal[slot].also == (f"animal/{slot}.safetensors",)
    stitch = "liveportrait/retargeting_models/stitching_retargeting_module.pth"
    assert human["stitching_retargeting_module"].relpath == stitch
    assert animal["stitching_retargeting_module"] == human["stitching_retargeting_module"]
    kijai = mf.liveportrait_files("animal", "kijai")
    assert kijai["warping_module"].repo_id == "Kijai/LivePortrait_safetensors"
    assert kijai["warping_module"].repo_path == "animal/warping_module.safetensors"
    assert kijai["stitching_retargeting_module"].repo_path == "stitching_retargeting_module.safetensors"
    crop = mf.cropper_files()
    assert crop["face_detector"].relpath == "insightface/models/buffalo_l/det_10g.onnx"
    assert crop["face_landmarks_106"].relpath == "insightface/models/buffalo_l/2d106det.onnx"
    assert crop["landmarks_203"].relpath == "liveportrait/landmark.onnx"
    jv = mf.joyvasa_files()
    assert (jv["motion_generator"].repo_id, jv["motion_generator"].repo_path) == (
        "jdh-algo/JoyVASA", "motion_generator/motion_generator_hubert_chinese.pt")
    assert jv["motion_template"].relpath == "JoyVASA/motion_template/motion_template.pkl"
    assert jv["motion_template"].local_subdir == "JoyVASA"
    assert mf.audio_encoder_files()["weights"].repo_id == "TencentGameMate/chinese-hubert-base"
    assert mf.audio_encoder_files("wav2vec2-base-960h")["weights"].relpath == \
        "wav2vec2-base-960h/model.safetensors"


def test_every_entry_is_consistent():
    for entry in _all_entries():
        assert entry.relpath.endswith(entry.repo_path)
        assert "\\" not in entry.relpath and not entry.relpath.startswith("/")
    with pytest.raises(ValueError):
        mf.ModelFile("x", "a/b.pth", "r", "c.pth")
    with pytest.raises(ValueError):
        mf.liveportrait_files("cat")


def test_resolve_official_tree(tmp_path):
    files = mf.liveportrait_files("human")
    for entry in files.values():
        _touch(tmp_path / entry.relpath)
    got = mf.resolve_liveportrait(tmp_path)
    assert got == {slot: tmp_path / entry.relpath for slot, entry in files.items()}


def test_resolve_kijai_folder_as_extra_dir(tmp_path):
    kijai = tmp_path / "ComfyUI/models/liveportrait"
    for slot in [*LP, "stitching_retargeting_module"]:
        _touch(kijai / f"{slot}.safetensors")
        _touch(kijai / "animal" / f"{slot}.safetensors")
    models = tmp_path / "pretrained_weights"
    human = mf.resolve_liveportrait(models, "human", extra_dirs=[kijai])
    animal = mf.resolve_liveportrait(models, "animal", extra_dirs=[kijai])
    assert human["warping_module"] == kijai / "warping_module.safetensors"
    assert animal["warping_module"] == kijai / "animal/warping_module.safetensors"
    assert animal["stitching_retargeting_module"] == kijai / "stitching_retargeting_module.safetensors"
    # The official tree in the models folder wins over the extra folder.
    official = _touch(models / "liveportrait/base_models/warping_module.pth")
    assert mf.resolve_liveportrait(models, extra_dirs=[kijai])["warping_module"] == official


def test_missing_files_error_lists_every_expected_path(tmp_path):
    _touch(tmp_path / "liveportrait/base_models/motion_extractor.pth")
    with pytest.raises(mf.ModelFilesError) as info:
        mf.resolve_liveportrait(tmp_path, extra_dirs=[tmp_path / "kijai"])
    err = info.value
    assert isinstance(err, CheckpointError) and isinstance(err, FileNotFoundError)
    assert [m.slot for m in err.missing] == [s for s in mf.LIVEPORTRAIT_SLOTS if s != "motion_extractor"]
    msg = str(err)
    for slot in ("appearance_feature_extractor", "warping_module", "spade_generator"):
        assert str(tmp_path / f"liveportrait/base_models/{slot}.pth") in msg
    assert str(tmp_path / "liveportrait/retargeting_models/stitching_retargeting_module.pth") in msg
    assert "motion_extractor.pth" not in msg
    assert "huggingface-cli download KwaiVGI/LivePortrait" in msg and str(tmp_path / "kijai") in msg


def test_motion_generator_any_pt_and_named(tmp_path):
    folder = tmp_path / mf.MOTION_GENERATOR_DIR
    _touch(folder / "iter_0010000.pt")
    _touch(folder / "iter_0020000.pt")
    assert mf.resolve_motion_generator(tmp_path) == folder / "iter_0020000.pt"
    assert mf.resolve_motion_generator(tmp_path, "iter_0010000.pt") == folder / "iter_0010000.pt"
    official = _touch(folder / mf.MOTION_GENERATOR_FILE)
    assert mf.resolve_motion_generator(tmp_path) == official
    with pytest.raises(mf.ModelFilesError, match="iter_9.pt"):
        mf.resolve_motion_generator(tmp_path, "iter_9.pt")


def test_motion_template_converted_forms(tmp_path):
    folder = tmp_path / mf.MOTION_TEMPLATE_DIR
    with pytest.raises(mf.ModelFilesError, match="motion_template.pkl"):
        mf.resolve_motion_template(tmp_path)
    converted = _touch(folder / "motion_template.json")
    assert mf.resolve_motion_template(tmp_path) == converted
    official = _touch(folder / "motion_template.pkl")
    assert mf.resolve_motion_template(tmp_path) == official


def test_audio_encoder_folder_names(tmp_path):
    colon = tmp_path / "TencentGameMate:chinese-hubert-base"
    for name in ("config.json", "preprocessor_config.json", "pytorch_model.bin"):
        _touch(colon / name)
    assert mf.resolve_audio_encoder(tmp_path) == colon
    plain = tmp_path / "chinese-hubert-base"
    _touch(plain / "config.json")
    with pytest.raises(CheckpointError, match="must be in one folder"):
        mf.resolve_audio_encoder(tmp_path)
    wav = tmp_path / "wav2vec2-base-960h"
    for name in ("config.json", "preprocessor_config.json", "pytorch_model.bin"):
        _touch(wav / name)
    assert mf.resolve_audio_encoder(tmp_path, "wav2vec2-base-960h") == wav
    with pytest.raises(ValueError):
        mf.audio_encoder_files("whisper")


# --------------------------------------------------------------------------- downloads

class FakeHub:
    """Stands in for ``hf_hub_download``: writes the file, or fails after ``fail_after`` calls."""

    def __init__(self, fail_after: int | None = None, exc: Exception | None = None) -> None:
        self.calls: list[tuple[str, str, Path]] = []
        self.fail_after, self.exc = fail_after, exc

    def __call__(self, repo_id, filename, *, local_dir, **kwargs):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise self.exc
        self.calls.append((repo_id, filename, Path(local_dir)))
        return str(_touch(Path(local_dir) / filename))


@pytest.fixture
def reachable_hub(monkeypatch):
    """A real TCP listener on loopback as the Hugging Face endpoint: the connectivity probe
    gets through (the downloads themselves are :class:`FakeHub`)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.getsockname()[1]}")
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        yield server


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        return server.getsockname()[1]


def test_probe_reaches_a_listening_endpoint(reachable_hub):
    assert mf.hub_unreachable() is None


def test_probe_names_the_endpoint_it_cannot_reach(monkeypatch):
    port = _closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    start = time.perf_counter()
    why = mf.hub_unreachable()
    assert time.perf_counter() - start < mf.PROBE_TIMEOUT
    assert why.startswith(f"http://127.0.0.1:{port} cannot be reached: ") and "refused" in why


def test_probe_goes_through_the_proxy(monkeypatch, reachable_hub):
    """With a proxy configured, the proxy is what must answer (the endpoint itself may be
    unreachable directly)."""
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{reachable_hub.getsockname()[1]}")
    monkeypatch.setenv("no_proxy", "")
    assert mf.hub_unreachable() is None
    proxy = f"127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("http_proxy", proxy)
    assert f"(through the proxy {proxy}) cannot be reached" in mf.hub_unreachable()


def test_download_missing_fetches_only_missing_files(monkeypatch, tmp_path, reachable_hub):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    files = mf.required_files("human", cropper=True)
    present = _touch(tmp_path / "liveportrait/base_models/motion_extractor.pth")
    seen = []
    got = mf.download_missing(tmp_path, files, progress=False,
                              on_file=lambda i, n, f: seen.append((i, n, f.slot)))
    assert len(hub.calls) == len(files) - 1 == len(got) == len(seen)
    assert seen[-1][:2] == (len(files) - 1, len(files) - 1)
    assert ("jdh-algo/JoyVASA", "motion_template/motion_template.pkl", tmp_path / "JoyVASA") in hub.calls
    assert ("KwaiVGI/LivePortrait", "liveportrait/base_models/warping_module.pth", tmp_path) in hub.calls
    assert ("TencentGameMate/chinese-hubert-base", "config.json",
            tmp_path / "chinese-hubert-base") in hub.calls
    assert got["motion_template"] == tmp_path / "JoyVASA/motion_template/motion_template.pkl"
    assert present.read_text() == "x" and "motion_extractor" not in got
    assert mf.missing_files(tmp_path, files) == []
    assert mf.download_missing(tmp_path, files) == {}  # nothing left to do
    assert not are_progress_bars_disabled()  # restored after progress=False


@pytest.mark.parametrize("how", ["env", "constant"])
def test_offline_lists_every_missing_file_without_calling_the_hub(monkeypatch, tmp_path, how):
    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    files = mf.required_files("animal")
    with pytest.raises(mf.ModelFilesError, match="HF_HUB_OFFLINE") as info:
        mf.download_missing(tmp_path, files)
    assert hub.calls == []
    assert info.value.missing == files
    msg = str(info.value)
    for entry in files:
        assert str(tmp_path / entry.relpath) in msg
    assert "liveportrait_animals/base_models/spade_generator.pth" in msg


def test_network_failure_lists_what_is_still_missing(monkeypatch, tmp_path, reachable_hub):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    error = huggingface_hub.errors.LocalEntryNotFoundError(
        "Connection error, and no cache\n" + "retrying... " * 300)
    hub = FakeHub(fail_after=2, exc=error)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    files = list(mf.liveportrait_files().values())
    with pytest.raises(mf.ModelFilesError, match="LocalEntryNotFoundError") as info:
        mf.download_missing(tmp_path, files, progress=False)
    assert info.value.missing == files[2:]
    assert info.value.__cause__ is error
    head = str(info.value).splitlines()[0]      # the hub's text cut to its first line
    assert head.endswith("(LocalEntryNotFoundError: Connection error, and no cache):")
    assert (tmp_path / files[0].relpath).is_file()


def test_ensure_files_without_download(monkeypatch, tmp_path):
    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub)
    with pytest.raises(mf.ModelFilesError, match="automatic download is off") as info:
        mf.ensure_files(tmp_path, download=False, motion_generator="iter_0020000.pt")
    assert hub.calls == []
    assert str(tmp_path / "JoyVASA/motion_generator/iter_0020000.pt") in str(info.value)
    for entry in mf.required_files():
        if entry.slot != "motion_generator":
            _touch(tmp_path / entry.relpath)
    _touch(tmp_path / "JoyVASA/motion_generator/iter_0020000.pt")
    mf.ensure_files(tmp_path, download=False, motion_generator="iter_0020000.pt")
