"""hubbub's benchmark suite: `python -m bench SCENARIO` (docs/benchmarks.md)."""
