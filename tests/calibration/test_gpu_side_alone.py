"""The measuring side runs where vLLM is not installed: a GPU machine with only torch and numpy."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# In a fresh interpreter, vLLM cannot be imported; then the measuring modules are imported, and
# the command runs as the GPU machine runs it: --help, then a CPU dry run through every family.
# The simulator must stay out too: its modules may come to need vLLM.
PROBE = """
import runpy, sys

class NoVllm:
    def find_spec(self, name, path=None, target=None):
        if name == "vllm" or name.startswith("vllm."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoVllm())
try:
    import vllm
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the probe failed to hide vllm")

for module in ("cli", "copiers", "decoder", "environment", "fit", "formats", "formulas", "measure",
               "plans", "shapes", "swap_rig", "table", "timing", "allreduce"):
    __import__(f"vllm_cfs.calibration.{module}")
for module in ("vllm_cfs.swap.copy_engine", "vllm_cfs.swap.speed"):  # benchmarks/swap_speed.py's
    __import__(module)
for argv in (["--help"], ["--dry-run", "--out", sys.argv[1]]):
    sys.argv = ["benchmarks/calibrate_gpu.py", *argv]
    try:
        runpy.run_path("benchmarks/calibrate_gpu.py", run_name="__main__")
    except SystemExit as exc:
        assert exc.code == 0, (argv, exc.code)
for script in ("benchmarks/calibrate_allreduce.py", "benchmarks/swap_speed.py"):
    sys.argv = [script, "--help"]
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        assert exc.code == 0, (script, exc.code)
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "vllm" or m.startswith("vllm_cfs.sim"))
assert not loaded, loaded
print("standalone ok")
"""


def test_measuring_side_imports_neither_vllm_nor_the_simulator(tmp_path):
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "--from-raw RAW_JSON" in done.stdout
    assert done.stdout.rstrip().endswith("standalone ok")
    assert {p.name for p in tmp_path.iterdir()} == {"raw.json", "profile.json", "table.md"}
