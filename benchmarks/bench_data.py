"""Conversion throughput of `drnngen prepare` (clicks/s) and its peak memory.

A synthetic YOOCHOOSE log of >= 2 M clicks is generated, then converted (read, sessions,
store, window-4 HDF5 files) in a fresh spawned process so that its peak RSS (VmHWM, which
a new process image starts afresh) is the conversion's own. BLAS is held to one thread:
the figure is for one core. Figures only; nothing is asserted.
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from drnngen.data.prepare import PrepareOptions, prepare
from drnngen.data.readers import LogSpec
from drnngen.data.sessions import BuildOptions
from drnngen.data.synth import SynthOptions, synthesize

SESSIONS = 260_000  # about 2.1 M clicks at the default mean session length
MAX_PAGES = 1000


def _peak_rss_kib() -> int:
    """This process's peak resident set (VmHWM) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _convert(folder: str) -> dict[str, Any]:
    """Run in a spawned child: convert and report time and peak RSS."""
    base = Path(folder)
    before = _peak_rss_kib()
    start = time.perf_counter()
    cpu = time.process_time()
    report = prepare(
        LogSpec("yoochoose", base / "log" / "clicks.dat", buys=base / "log" / "buys.dat",
                users=base / "log" / "users.csv"),
        PrepareOptions(build=BuildOptions(max_pages=MAX_PAGES), window=4),
        base / "out",
        lambda _: None,
    )
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    peak = _peak_rss_kib()
    out_bytes = sum(p.stat().st_size for p in (base / "out").rglob("*") if p.is_file())
    return {"seconds": seconds, "cpu": cpu, "stages": report.seconds, "events": report.events,
            "samples": sum(report.manifest.samples.values()), "rss_before_kib": before, "rss_peak_kib": peak,
            "out_bytes": out_bytes}


def main() -> None:
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"  # inherited by the spawned child before it imports numpy
    with tempfile.TemporaryDirectory(prefix="drnngen-bench-") as tmp:
        start = time.perf_counter()
        synthesize(SynthOptions(sessions=SESSIONS, seed=1), "yoochoose", Path(tmp) / "log", False, lambda _: None)
        clicks = sum(1 for _ in (Path(tmp) / "log" / "clicks.dat").open("rb"))
        log_bytes = sum(p.stat().st_size for p in (Path(tmp) / "log").iterdir())
        print(f"synthetic YOOCHOOSE log: {clicks:,} clicks, {log_bytes / 2**20:.0f} MiB, "
              f"generated in {time.perf_counter() - start:.1f} s")
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            result = pool.apply(_convert, (tmp,))
    stages = ", ".join(f"{name} {sec:.2f} s" for name, sec in result["stages"].items())
    print(f"prepare (purchase target, M={MAX_PAGES}, window 4, {result['samples']:,} samples): "
          f"{result['seconds']:.2f} s wall, {result['cpu']:.2f} s CPU ({stages})")
    print(f"throughput: {clicks / result['seconds'] / 1e6:.2f} M clicks/s wall-clock, "
          f"{clicks / result['cpu'] / 1e6:.2f} M clicks/s per CPU second "
          f"(reading alone: {result['events'] / result['stages']['read'] / 1e6:.2f} M events/s)")
    print(f"peak RSS of the conversion: {result['rss_peak_kib'] / 1024:.0f} MiB "
          f"(interpreter + imports before it: {result['rss_before_kib'] / 1024:.0f} MiB; "
          f"input {log_bytes / 2**20:.0f} MiB, output {result['out_bytes'] / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
