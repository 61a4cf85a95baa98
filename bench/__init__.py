"""Benchmarks of the real bot against the local stand-ins: `make bench` (python -m bench).

Not tests: CI does not run them. `tests/test_bench_smoke.py` runs them with tiny counts so the
script cannot rot.
"""
