"""Benchmarks. `python -m bench` is the comparison harness (ElasticCode, raw Celery, Dask, ipyparallel,
Parsl, on one machine, in one run); `bench/call_overhead.py` and `bench/history_bench.py` are
narrower measurements kept for the worker side and for history() alone."""
