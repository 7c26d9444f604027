import pytest

from vllm_cfs.calibration.cli import main


@pytest.fixture(scope="session")
def dry_run(tmp_path_factory):
    """One real CPU dry run of the calibrate command: its folder holds raw.json, profile.json, table.md."""
    out = tmp_path_factory.mktemp("dry_run")
    assert main(["--dry-run", "--out", str(out)]) == 0
    return out
