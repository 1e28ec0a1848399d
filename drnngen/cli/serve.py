"""`drnngen serve` and `drnngen update`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from drnngen.cli.params import finite


@click.command()
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--store", default="sqlite:", show_default=True,
              help="Session store: sqlite:PATH (WAL; bare `sqlite:` is RUN/serving/state.sqlite) or "
                   "redis://HOST:PORT/DB (several servers sharing sessions).")
@click.option("-k", "k", type=click.IntRange(1), default=10, show_default=True,
              help="Recommendations per answer when a request gives no ?k=.")
@click.option("--idle", "idle_s", type=finite(0, min_open=True), default=1800.0, show_default=True,
              help="Seconds without an event after which a session expires.")
@click.option("--samples", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Sample log of completed sessions (default RUN/serving/samples.jsonl).")
@click.option("--admin-token", default=None,
              help="Token for the admin routes (Authorization: Bearer TOKEN); without one they answer "
                   "loopback clients only. Also read from DRNNGEN_ADMIN_TOKEN.")
@click.option("--max-events", type=click.IntRange(1), default=10_000, show_default=True,
              help="Most events one session may have.")
@click.option("--engine", type=click.Choice(["numpy", "caffe"]), default=None,
              help="What scores the events: numpy (in the server's process, from the caffemodel's weights; "
                   "the default) or caffe (a Caffe child process; the default with --gpu).")
@click.option("--gpu", is_flag=True, help="Run the forward passes on the GPU (a CUDA build of Caffe; "
                                          "implies --engine caffe).")
def serve(run: Path, host: str, port: int, store: str, k: int, idle_s: float, samples: Path | None,
          admin_token: str | None, max_events: int, engine: str | None, gpu: bool) -> None:
    """Serve RUN's best net (or the weights `drnngen update` swapped in) over HTTP: session events
    in, recommendations out. Endpoints: POST /sessions/{id}/events, GET /sessions/{id}/recommendations,
    POST /sessions/{id}/end, GET /health, GET /model, POST /admin/reload (SIGHUP also reloads);
    OpenAPI docs at /docs."""
    from drnngen.serving.server import ServeOptions
    from drnngen.serving.server import serve as run_server

    token = admin_token or os.environ.get("DRNNGEN_ADMIN_TOKEN") or None
    options = ServeOptions(host=host, port=port, store=store, k=k, idle_s=idle_s, samples=samples,
                           admin_token=token, max_events=max_events, mode="gpu" if gpu else "cpu",
                           engine=engine or ("caffe" if gpu else "numpy"))
    run_server(run, options, say=lambda line: click.echo(line, err=True))


@click.command()
@click.argument("run", type=click.Path(file_okay=False, path_type=Path))
@click.option("--samples", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Sample log the server wrote (RUN/serving/samples.jsonl by default).")
@click.option("--iters", "iterations", type=click.IntRange(1), default=100, show_default=True,
              help="Fine-tuning iterations (Caffe solver steps from the served weights).")
@click.option("--lr-factor", "lr_factor", type=finite(0, 1, min_open=True), default=0.1, show_default=True,
              help="Fine-tuning learning rate as a share of the served candidate's base_lr.")
@click.option("--gpu", is_flag=True, help="Fine-tune and evaluate on the GPU (a CUDA build of Caffe).")
def update(run: Path, samples: Path, iterations: int, lr_factor: float, gpu: bool) -> None:
    """Fine-tune RUN's served net on completed sessions' samples, evaluate it on the validation
    split, and swap it in only if its fitness is no worse. A running `drnngen serve RUN` picks it up
    on POST /admin/reload or SIGHUP, keeping every session."""
    from drnngen.serving.update import update as run_update

    result = run_update(run, samples, iterations, "gpu" if gpu else "cpu", lr_factor)
    verdict = "swapped in" if result.swapped else "kept the served weights (the new ones are worse)"
    click.echo(f"update {result.update}: {result.samples} samples, {iterations} iterations; validation fitness "
               f"{result.old_fitness:.6f} -> {result.new_fitness:.6f}: {verdict}")
    if result.swapped:
        click.echo("reload a running server: curl -X POST http://127.0.0.1:8080/admin/reload (or kill -HUP its pid)")
