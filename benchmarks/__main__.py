"""Run every benchmarks/bench_*.py module's `main()` in name order (or those named).

`bench_quality` (`make quality`: tens of minutes of tuning) and `bench_tuners`
(`make bench-tuners`) run only when named.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks

#: Modules `make bench` skips unless named: they have their own make target.
SEPARATE = frozenset({"bench_quality", "bench_tuners"})


def main(selected: list[str]) -> None:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    for name in names:
        wanted = name.removeprefix("bench_") in selected if selected else name not in SEPARATE
        if not wanted:
            continue
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        importlib.import_module(f"benchmarks.{name}").main()
        print(f"== {name} done in {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
