"""`grpo-suite run` warns before any cell when the host's GPUs are not the generation the cells were planned for."""

import pytest

from suite.run import prepare


@pytest.mark.parametrize(
    ("planned", "device", "expected"),
    [
        (["h100"], "NVIDIA H200", "cells planned for h100 run on NVIDIA H200 (h200)"),  # seen on 2026-11-28
        (["h100", "h100"], "NVIDIA H100 80GB HBM3", None),
        (["h20"], "NVIDIA H20", None),
        (["h100", "h200"], "NVIDIA H200", "cells planned for h100 run on NVIDIA H200 (h200)"),
        (["h100"], None, None),  # no NVML: nothing to compare
        (["h100"], "Some Future GPU", None),  # unknown device: no claim
    ],
)
def test_generation_note(planned, device, expected):
    note = prepare.generation_note(planned, device)
    if expected is None:
        assert note is None
    else:
        assert note.startswith(expected) and "filed under h200" in note and "memory predictions" in note


def test_device_name_only_with_nvml():
    from suite.telemetry.nvml import nvml_session

    with nvml_session() as nvml:
        present = nvml is not None
    name = prepare.host_device_name([0])
    assert (name is not None) == present and (name is None or name.startswith("NVIDIA"))
