"""Host memory: what is free to the process, and the refusal of a batch that would not fit."""
import pytest

from joyvasa_core import host_memory
from joyvasa_core.host_memory import HostMemoryError, check_frame_batch, frame_batch_bytes
from helpers_memory import lowered_memory_limit

MB = 1 << 20


def test_a_minute_of_full_hd_frames_is_37_gb():
    assert frame_batch_bytes(1500, 1080, 1920) == 1500 * 1080 * 1920 * 3 * 4
    assert host_memory.gigabytes(frame_batch_bytes(1500, 1080, 1920)) == "37.3 GB"


def test_free_memory_honours_a_lowered_limit():
    unlimited = host_memory.available_bytes()
    assert unlimited is not None and unlimited > 300 * MB
    with lowered_memory_limit(300 * MB):
        free = host_memory.available_bytes()
        assert 250 * MB < free <= 300 * MB
    assert host_memory.available_bytes() > 300 * MB                 # restored


def test_an_oversized_batch_is_refused_and_a_small_one_passes():
    with lowered_memory_limit(400 * MB):
        check_frame_batch(20, 720, 1280, what="the frames", fix="write them to a file")  # 221 MB
        with pytest.raises(HostMemoryError) as err:
            check_frame_batch(100, 720, 1280, what="RenderPortrait's images",
                              fix="use RenderToFile")                                # 1.1 GB
    message = str(err.value)
    assert message.startswith("RenderPortrait's images would take 1.1 GB (100 frames of 1280x720")
    assert "0.4 GB of memory is free: use RenderToFile" in message and "\n" not in message


def test_the_least_of_the_known_limits_counts(monkeypatch):
    monkeypatch.setattr(host_memory, "_system_available", lambda: 64 << 30)
    monkeypatch.setattr(host_memory, "_cgroup_available", lambda: 2 << 30)    # a container
    monkeypatch.setattr(host_memory, "_address_space_available", lambda: None)
    assert host_memory.available_bytes() == 2 << 30
    monkeypatch.setattr(host_memory, "_address_space_available", lambda: 1 << 30)  # ulimit -v
    assert host_memory.available_bytes() == 1 << 30
    monkeypatch.setattr(host_memory, "_cgroup_available", lambda: None)
    monkeypatch.setattr(host_memory, "_address_space_available", lambda: None)
    assert host_memory.available_bytes() == 64 << 30                  # no limit: the system's


def test_a_container_limit_is_read_from_its_cgroup(tmp_path, monkeypatch):
    monkeypatch.setattr(host_memory, "_CGROUP", tmp_path)
    assert host_memory._cgroup_available() is None                  # no cgroup files
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.current").write_text("1000\n")
    assert host_memory._cgroup_available() is None                  # v2, unlimited
    (tmp_path / "memory.max").write_text(f"{8 << 30}\n")
    assert host_memory._cgroup_available() == (8 << 30) - 1000     # v2 limit less usage
