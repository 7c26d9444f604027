"""A bad CFS_INTERVAL stops `vllm serve` at start, with one line that names the variable and value.

Our vLLM general plugin (vllm_cfs.plugin) checks the setting while vLLM builds its engine
arguments, before any engine process exists, so the user sees that line and no traceback.
"""

import re

import pytest

from vllm_cfs.sim.server import ServerOptions, ServerStartError, simulated_server


def test_bad_interval_stops_server_start_with_a_line_naming_it(tmp_path):
    log = tmp_path / "vllm_server.log"
    options = ServerOptions(profile="h200", scheduler_cls="vllm_cfs.CFSScheduler",
                            cfs_interval="ten", log_path=log)
    with pytest.raises(ServerStartError, match=r"vllm serve exited with code [1-9]"):
        with simulated_server(options):
            pass
    text = log.read_text()
    lines = re.findall(r"^.*CFS_INTERVAL=.*$", text, re.M)
    assert lines == ["error: CFS_INTERVAL='ten' is invalid: expected a whole number >= 0 "
                     "(a CFS step every N scheduling steps; 0 = vLLM's default FCFS)"]
    assert "Traceback" not in text and not re.search(r"^ERROR ", text, re.M)
