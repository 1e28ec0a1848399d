"""`drnngen serve RUN`: the served model, its Caffe child, the store and the HTTP server.

Reload (`POST /admin/reload`, or SIGHUP) reads RUN's served weights again
(`serving.model.load_model`), starts a Caffe child with them and swaps it in; sessions live
in the store and are not touched. The old child stops once the swap is done.
"""

from __future__ import annotations

import errno
import gc
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drnngen.errors import UserError
from drnngen.runner.jobs import Mode
from drnngen.runner.numpy_net import NumpyNet
from drnngen.runner.serving import ForwardServer
from drnngen.serving.model import ServedModel, load_model, serving_dir
from drnngen.serving.samples import SAMPLES_FILE, SampleLog
from drnngen.serving.service import SessionService
from drnngen.serving.store import check_store_url, open_store


@dataclass(frozen=True)
class ServeOptions:
    """The `drnngen serve` options."""

    host: str = "127.0.0.1"
    port: int = 8080
    store: str = "sqlite:"
    k: int = 10
    idle_s: float = 1800.0
    samples: Path | None = None  # default RUN/serving/samples.jsonl
    admin_token: str | None = None
    max_events: int = 10_000
    mode: Mode = "cpu"
    engine: str = "numpy"  # ENGINES


ENGINES = ("numpy", "caffe")  # in this process from the caffemodel, or a Caffe child (GPU mode needs it)


class Served:
    """The running pieces; `reload` swaps the net, `close` stops the child and the store."""

    def __init__(self, run: Path, options: ServeOptions) -> None:
        self.run = run
        model = load_model(run)
        if not 1 <= options.k <= model.manifest.items:
            raise UserError(f"-k {options.k}: expected 1..{model.manifest.items} (the model's N)")
        if not options.idle_s > 0:
            raise UserError(f"--idle {options.idle_s}: expected a positive number of seconds")
        self.store = open_store(options.store, serving_dir(run), options.idle_s)
        self.samples = SampleLog(options.samples or serving_dir(run) / SAMPLES_FILE)
        if options.engine not in ENGINES:
            raise UserError(f"--engine {options.engine}: expected one of {', '.join(ENGINES)}")
        if options.engine == "numpy" and options.mode == "gpu":
            raise UserError("--gpu needs --engine caffe (the NumPy engine scores on the CPU)")
        self.mode, self.engine = options.mode, options.engine
        self.forward = self._forward(model)
        self.service = SessionService(model, self.forward, self.store, self.samples, options.max_events)
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._expire, daemon=True).start()

    def _forward(self, model: ServedModel) -> ForwardServer | NumpyNet:
        if self.engine == "numpy":
            return NumpyNet(model.deploy, model.weights)
        return ForwardServer(model.deploy, model.weights, mode=self.mode)

    def reload(self) -> dict[str, Any]:
        """Serve RUN's current weights; what `GET /model` now answers."""
        with self._reload_lock:
            model = load_model(self.run)
            old, new = self.forward, self._forward(model)
            self.service.swap(model, new)
            self.forward = new
        old.close()
        return {"reloaded": True, **model.describe()}

    def _expire(self) -> None:
        every = max(1.0, min(60.0, self.store.idle_s / 4))
        while not self._stop.wait(every):
            self.store.expire()

    def close(self) -> None:
        if self._stop.is_set():
            return  # closed already (the app's shutdown, then the `finally`)
        self._stop.set()
        self.forward.close()
        self.samples.close()
        self.store.close()


def check_port(host: str, port: int) -> None:
    """One line when the address cannot be bound (in use, or not this machine's)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host[:80]}: {exc.strerror}") from None
    except UnicodeError:  # a label over 63 characters, say (the idna codec)
        raise UserError(f"--host {host[:80]}: not a host name or address") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            why = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise UserError(f"--port {port}: cannot listen on {host}:{port} ({why})") from None


def serve(run: Path, options: ServeOptions, say: Any = print) -> None:
    """Serve RUN until SIGINT/SIGTERM; SIGHUP reloads the weights."""
    import uvicorn

    from drnngen.serving.app import create_app

    check_store_url(options.store)
    check_port(options.host, options.port)
    served = Served(run, options)
    try:
        app = create_app(served.service, served.reload, options.k, options.admin_token, on_close=served.close)
        signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=_quiet_reload, args=(served, say)).start())
        described = served.service.model.describe()
        say(f"serving {run} (candidate {described['candidate']}, fitness {described['fitness']:.4f}, "
            f"w={described['w']}, M={described['M']}, N={described['N']}) on http://{options.host}:{options.port}")
        # What the server holds from here on lives as long as it does: frozen, the cyclic
        # collector no longer walks it (FastAPI's, pydantic's and numpy's objects) in the
        # full collections that would otherwise stall a request now and then.
        gc.collect()
        gc.freeze()
        # uvloop and httptools (what "auto" picks when installed) named outright, so a
        # missing one is an import error rather than a silent 2x slower server
        uvicorn.run(app, host=options.host, port=options.port, log_level="warning", access_log=False,
                    loop="uvloop", http="httptools")
    finally:
        served.close()


def _quiet_reload(served: Served, say: Any) -> None:
    try:
        described = served.reload()
        say(f"reloaded: update {described['update']}, fitness {described['fitness']:.4f}")
    except UserError as exc:
        say(f"error: reload failed, still serving the old weights: {exc}")
