"""Tests of the V1 engine (vllm_cfs.v1, the V1 simulated GPU); they run in `.venv-v1` (`make test` does)."""
