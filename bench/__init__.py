"""pytest-benchmark suites: `pytest bench --benchmark-json out.json` (or `make bench`).

Each group times a baseline and its contenders in the same run, so pytest-benchmark's table shows the
ratios; images/s go into each benchmark's extra_info.
"""
