"""`drnngen serve` under load: a loopback client replays a shop-like log's sessions.

The demo's model: a copy of out/demo/run (or --run) when `make demo` has made it, else
a quick run tuned here on the demo's data (synth --sessions 4000 --seed 7 --items 300,
prepare --max-pages 400 --max-items 60, with users; two candidates, 150 iterations). The client paces events at
--rate per second from several threads, many sessions interleaved, bounded in count and
time; it reports throughput and p50/p99 latency per event, the state store's size per
10k live sessions, and then kills the server with SIGKILL, restarts it on the same SQLite
file and counts the acknowledged events the store still holds.

    python -m benchmarks.bench_serve [--rate 300] [--seconds 20] [--threads 6] [--run RUN]
                                     [--engine numpy|caffe]
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEMO_RUN = REPO / "out" / "demo" / "run"
DRNNGEN = [sys.executable, "-c", "from drnngen.cli import main; main()"]


def _make_run(root: Path) -> Path:
    from drnngen.codegen.config import load_config, to_mapping
    from drnngen.data.prepare import PrepareOptions, prepare
    from drnngen.data.readers import LogSpec
    from drnngen.data.sessions import BuildOptions
    from drnngen.data.synth import SynthOptions, synthesize
    from drnngen.tuner import Resources, TuneParams, tune
    from drnngen.tuner.space import IntRange, SearchSpace, space_mapping

    def quiet(_: str) -> None:
        pass

    synthesize(SynthOptions(sessions=4000, seed=7, items=300), "yoochoose", root / "logs", False, quiet)
    spec = LogSpec("yoochoose", root / "logs" / "clicks.dat", buys=root / "logs" / "buys.dat",
                   users=root / "logs" / "users.csv")
    prepare(spec, PrepareOptions(build=BuildOptions(max_pages=400, max_items=60), window=4), root / "data", quiet)
    base = to_mapping(load_config(REPO / "examples" / "small.yaml"))
    space = SearchSpace(IntRange(4, 4), IntRange(2, 2), IntRange(0, 1), ("ReLU", "TanH"), (64,))
    params = TuneParams(data=str(root / "data"), generations=0, population=2, pc=0.8, pm=0.3, strategy="literal",
                        seed=7, iterations=150, epochs=None, mode="cpu", timeout_s=600.0, base=base,
                        space=space_mapping(space))
    tune(root / "run", params, Resources(workers=1, cache_dir=root / "cache"))
    return root / "run"


def _sessions(run: Path, limit: int) -> list[list[dict[str, Any]]]:
    """Sessions of the served dataset's log as event bodies (items the model knows)."""
    from drnngen.serving.model import load_model

    manifest = load_model(run).manifest
    pages = [str(k) for k in manifest.page_keys()[2:]]
    items = [str(k) for k in manifest.item_keys()]
    rng = np.random.default_rng(1)
    sessions = []
    for _ in range(limit):  # shop-like: a few views, now and then a purchase
        length = int(rng.integers(2, 12))
        start = float(rng.integers(1_400_000_000, 1_400_100_000))
        user = f"u{int(rng.integers(0, 500))}"
        events: list[dict[str, Any]] = [{"item": pages[int(rng.zipf(1.3)) % len(pages)], "time": start + 20 * i,
                                         "user": user} for i in range(length)]
        if rng.random() < 0.3:
            events.append({"item": items[int(rng.integers(0, len(items)))], "time": start + 20 * length,
                           "type": "purchase"})
        sessions.append(events)
    return sessions


def _serve(run: Path, port: int, store: Path, engine: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([*DRNNGEN, "serve", str(run), "--port", str(port), "--store", f"sqlite:{store}",
                             "--samples", str(store.with_suffix(".jsonl")), "--engine", engine],
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not come up")


class _Client:
    """One thread's share of the sessions, sent round robin at its share of the rate."""

    def __init__(self, port: int, sessions: list[tuple[str, list[dict[str, Any]]]], rate: float,
                 stop_at: float, budget: int, phase: float = 0.0) -> None:
        self.port, self.sessions, self.rate, self.stop_at, self.budget = port, sessions, rate, stop_at, budget
        self.phase = phase  # seconds this thread's schedule lags the first's
        self.latencies: list[float] = []
        self.acknowledged: dict[str, int] = {}
        self.errors = 0

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        cursor = {sid: 0 for sid, _ in self.sessions}
        start, sent = time.perf_counter() + self.phase, 0
        while time.time() < self.stop_at and sent < self.budget:
            open_sessions = [(sid, ev) for sid, ev in self.sessions if cursor[sid] < len(ev)]
            if not open_sessions:
                break
            for sid, events in open_sessions:
                if time.time() >= self.stop_at or sent >= self.budget:
                    break
                wait = start + sent / self.rate - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                body = json.dumps(events[cursor[sid]])
                t0 = time.perf_counter()
                connection.request("POST", f"/sessions/{sid}/events", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                self.latencies.append(time.perf_counter() - t0)
                sent += 1
                cursor[sid] += 1
                if response.status == 200:
                    self.acknowledged[sid] = self.acknowledged.get(sid, 0) + 1
                else:
                    self.errors += 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=300.0, help="events per second, all threads together")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the load runs (at most)")
    parser.add_argument("--events", type=int, default=6000, help="how many events (at most)")
    parser.add_argument("--threads", type=int, default=6)
    parser.add_argument("--lockstep", action="store_true",
                        help="every thread sends at the same instants (bursts of --threads requests) "
                             "instead of staggered evenly")
    parser.add_argument("--sessions", type=int, default=1500, help="sessions replayed (interleaved)")
    parser.add_argument("--run", type=Path, default=DEMO_RUN, help="the tuned run to serve (copied first)")
    parser.add_argument("--engine", choices=("numpy", "caffe"), default="numpy",
                        help="what scores the events (serve --engine)")
    args = parser.parse_args(argv if argv is not None else [])
    work = Path(tempfile.mkdtemp(prefix="drnngen-bench-serve-"))
    try:
        run = work / "run"
        if (args.run / "ledger.sqlite").is_file():
            shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("serving"))
        else:
            run = _make_run(work)
        print(f"model: {run}")
        _load(run, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _load(run: Path, work: Path, args: argparse.Namespace) -> None:
    from drnngen.serving.store import SqliteStore

    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = work / "state.sqlite"
    server = _serve(run, port, store, args.engine)
    sessions = [(f"b{i}", events) for i, events in enumerate(_sessions(run, args.sessions))]
    # The client's own collector would otherwise walk these thousands of event dicts in
    # the middle of the load, a pause the latencies would charge to the server.
    gc.collect()
    gc.freeze()
    stop_at = time.time() + args.seconds
    # Staggered: thread i sends 1/rate after thread i-1, so the events arrive evenly at the
    # asked rate; in lockstep (--lockstep) every thread sends at the same instants, bursts
    # of `threads` requests at once every threads/rate seconds.
    phase = 0.0 if args.lockstep else 1.0 / args.rate
    clients = [_Client(port, sessions[i::args.threads], args.rate / args.threads, stop_at,
                       args.events // args.threads, phase * i) for i in range(args.threads)]
    rss_before = _rss(server.pid)
    threads = [threading.Thread(target=c.run) for c in clients]
    cpu_before = _cpu(server.pid), sum(_cpu(pid) for pid in _children(server.pid)), time.process_time()
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    cpu_after = _cpu(server.pid), sum(_cpu(pid) for pid in _children(server.pid)), time.process_time()
    latencies = np.array([x for c in clients for x in c.latencies]) * 1000
    acknowledged = {sid: n for c in clients for sid, n in c.acknowledged.items()}
    live = len(acknowledged)
    rss_after = _rss(server.pid)
    print(f"events: {len(latencies)} in {elapsed:.1f} s = {len(latencies) / elapsed:.0f} events/s "
          f"(asked {args.rate:g}/s), {sum(c.errors for c in clients)} non-200")
    print(f"latency per event: p50 {np.percentile(latencies, 50):.2f} ms, p99 {np.percentile(latencies, 99):.2f} ms, "
          f"max {latencies.max():.1f} ms")
    per_event = [(after - before) / len(latencies) * 1e3 for after, before in zip(cpu_after, cpu_before, strict=True)]
    child = f", Caffe child {per_event[1]:.2f} ms" if args.engine == "caffe" else ""
    print(f"CPU per event ({args.engine} engine): server {per_event[0]:.2f} ms{child}, "
          f"load client {per_event[-1]:.2f} ms"
          f"; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    wal = store.with_name(store.name + "-wal")
    wal_size = wal.stat().st_size if wal.exists() else 0  # not per session: the log since the last checkpoint
    print(f"memory per 10k live sessions: store {store.stat().st_size / live * 1e4 / 2**20:.1f} MiB on disk "
          f"(SQLite file; its WAL {wal_size / 2**20:.0f} MiB now), "
          f"server RSS {(rss_after - rss_before) / live * 1e4 / 2**20:+.1f} MiB ({live} sessions live, "
          f"RSS {rss_after / 2**20:.0f} MiB)")
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()
    restarted = _serve(run, port, store, args.engine)
    try:
        kept = SqliteStore(store, 1e9)
        lost = sum(n - (kept.load(sid).events if kept.load(sid) else 0)  # type: ignore[union-attr]
                   for sid, n in acknowledged.items())
        kept.close()
        print(f"kill -9 and restart: {sum(acknowledged.values())} acknowledged events, {lost} lost")
    finally:
        os.killpg(restarted.pid, signal.SIGTERM)
        restarted.wait()


def _rss(pid: int) -> int:
    """Resident bytes of the server and its Caffe child."""
    total = 0
    for candidate in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


if __name__ == "__main__":
    main(sys.argv[1:])
