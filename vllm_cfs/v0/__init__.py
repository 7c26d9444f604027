"""The policies on vLLM 0.9.0's V0 engine: CFSScheduler (the assignment's), FairScheduler (ours).

Both subclass ``vllm.core.scheduler.Scheduler`` and rank requests with the shared policy core
(vllm_cfs.policy) through ``adapter``; ``block_lookup`` and ``block_pools`` mend two V0 block
manager costs and bugs the policies run into.
"""
