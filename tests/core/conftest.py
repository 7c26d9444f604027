import pytest

from vllm_cfs.lab.trace import Pools, make_scheduler


@pytest.fixture
def cfs_scheduler(monkeypatch):
    """Build a CFSScheduler with the given CFS_INTERVAL and pools."""
    from vllm_cfs.v0.scheduler import CFSScheduler

    def build(interval: int, pools: Pools, cls=CFSScheduler):
        monkeypatch.setenv("CFS_INTERVAL", str(interval))
        return make_scheduler(cls, pools)

    return build
