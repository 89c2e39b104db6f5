"""Every benchmark but deploy, one after another, then one table of their
figures (`make bench`; benchmarks.deploy recreates the sandbox: `make
bench-deploy`). Tracking runs last: it sets torch to one thread."""

from __future__ import annotations

from benchmarks import data, kernels, tracking
from benchmarks.common import print_table

if __name__ == "__main__":
    rows = []
    for bench in (data, kernels, tracking):
        print(f"== benchmarks.{bench.__name__.rsplit('.', 1)[1]}")
        rows += bench.main()
    print_table(rows)
