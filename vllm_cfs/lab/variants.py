"""CFSScheduler variants that studies compare against the shipped policy (load by dotted path)."""

from vllm_cfs.scheduler import CFSScheduler


class CFSHeldBySwapped(CFSScheduler):
    """Upstream's admission rule kept in default steps: no prefill while anything is swapped."""

    prefill_while_swapped = False
