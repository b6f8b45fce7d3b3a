"""Benchmarks: each entry measures a pair side by side in one run and reports the ratio.

Every entry module exposes `run(quick: bool) -> dict` returning
{"entry": name, "rows": [ {column: value, ...}, ... ], "ratios": {label: float}, "notes": str}
and prints its own table; `python -m agegender.bench ENTRY` runs them.
"""
