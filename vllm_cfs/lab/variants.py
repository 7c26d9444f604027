"""CFSScheduler variants that studies compare against the shipped policy (load by dotted path)."""

from collections import deque

from vllm.core.scheduler import SchedulerOutputs

from vllm_cfs.v0.scheduler import CFSScheduler


class CFSHeldBySwapped(CFSScheduler):
    """Upstream's admission rule kept in default steps: no prefill while anything is swapped."""

    prefill_while_swapped = False


class CFSForcedVictimsByVruntime(CFSScheduler):
    """Between CFS steps too, a decode that runs out of blocks evicts the request with the most tokens."""

    def _scheduled_step(self) -> SchedulerOutputs:
        """Overridden to hand upstream's step a running queue in eviction order: upstream preempts
        its tail, where it appended the requests it admitted last (the fairest ones)."""
        self.running = deque(sorted(self.running, key=self._eviction_key))
        return super()._scheduled_step()
