"""A bad CFS_INTERVAL stops `vllm serve` at start, with a line that names the variable and value.

What the user sees (vLLM 0.9.0, V0 engine in its own process): vLLM's engine process logs our
one-line message as an ERROR, then the same error's traceback; the API server then dies with
its own "Engine process failed to start" traceback. The line is there and comes first; the
tracebacks around it are vLLM's handling of any engine start failure.
"""

import re

import pytest

from vllm_cfs.sim.server import ServerOptions, ServerStartError, simulated_server


def test_bad_interval_stops_server_start_with_a_line_naming_it(tmp_path):
    log = tmp_path / "vllm_server.log"
    options = ServerOptions(profile="h200", scheduler_cls="vllm_cfs.CFSScheduler",
                            cfs_interval="ten", log_path=log, startup_timeout_s=150)
    with pytest.raises(ServerStartError, match=r"vllm serve exited with code [1-9]"):
        with simulated_server(options):
            pass
    text = log.read_text()
    lines = re.findall(r"^ERROR .*\] (CFS_INTERVAL=.*)$", text, re.M)
    assert lines, "no error line naming CFS_INTERVAL in the server log"
    assert lines[0] == ("CFS_INTERVAL='ten' is invalid: expected a whole number >= 0 "
                        "(a CFS step every N scheduling steps; 0 = vLLM's default FCFS)")
    # The message is the first error the log shows.
    first_error = re.search(r"^ERROR .*$", text, re.M).group(0)
    assert first_error.endswith(lines[0])
