"""The driver's Ray session without a cluster: address probing and where Ray's output goes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from automl.errors import AutomlError
from automl.search.ray_session import _probe_address, _route_raylet_messages, ray_logs_to


def test_raylet_worker_count_warning_goes_to_the_run_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from ray._private import worker

    _route_raylet_messages()
    benign = ("WARNING: 8 PYTHON worker processes have been started on node: abc with address: "
              "1.2.3.4, which is 4x the maximum expected startup concurrency (2).")
    other = "Task was killed due to the node running low on memory."
    log = tmp_path / "logs" / "ray.log"
    with ray_logs_to(log):
        worker.print_to_stdstream({"lines": [benign], "pid": "raylet", "is_err": False}, False)
        worker.print_to_stdstream({"lines": [other], "pid": "raylet", "is_err": False}, False)
        logging.getLogger("ray.tune").error("Trial task failed for trial x")
    out, err = capfd.readouterr()
    assert "PYTHON worker processes" not in out + err
    assert other in out  # anything else the raylet says still reaches the terminal
    assert "Trial task failed" not in out + err
    text = log.read_text()
    assert benign in text and other in text and "Trial task failed for trial x" in text
    # Outside a search nothing is rerouted.
    worker.print_to_stdstream({"lines": [benign], "pid": "raylet", "is_err": False}, False)
    assert "PYTHON worker processes" in capfd.readouterr().out


@pytest.mark.parametrize("address", ["127.0.0.1:9", "ray://127.0.0.1:9"])
def test_unreachable_address_fails_in_seconds(address: str) -> None:
    with pytest.raises(AutomlError, match=r"no Ray cluster answers at 127\.0\.0\.1:9"):
        _probe_address(address)


def test_malformed_address() -> None:
    with pytest.raises(AutomlError, match="expected auto, HOST:PORT or ray://HOST:PORT"):
        _probe_address("head:abc")
