"""`drnngen build` and `drnngen draw`."""

from __future__ import annotations

from pathlib import Path

import click

from drnngen.cli.params import output_path
from drnngen.codegen.build import generate, write
from drnngen.codegen.config import DRNNConfig, load_config, uses_fixed_maps

config_argument = click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
data_option = click.option(
    "--data", type=click.Path(path_type=Path), default=None,
    help="Prepared dataset (folder or manifest.json from `drnngen prepare`): fills M, N and the HDF5 sources.",
)


def _load(config: Path, data: Path | None) -> DRNNConfig:
    cfg = load_config(config)
    if data is None and cfg.data.manifest is None:
        return cfg
    from drnngen.bind import bind_dataset  # the data package (h5py) only when asked for

    return bind_dataset(cfg, data)


@click.command()
@config_argument
@click.option("-o", "--output", type=output_path(file_okay=False), default=Path("out"),
              show_default=True, help="Folder for net.prototxt, solver.prototxt and deploy.prototxt.")
@click.option("--dry-run", is_flag=True, help="Print the files instead of writing them.")
@data_option
def build(config: Path, output: Path, dry_run: bool, data: Path | None) -> None:
    """Generate the Caffe net, solver and deploy prototxt for CONFIG (a YAML file).

    A net with `model.repeat`, `model.tied` or `model.neighbours` reads fixed page→item maps; with
    --data it is written into the dataset folder and named here: pass it to
    `caffe train --weights`."""
    cfg = _load(config, data)
    files = generate(cfg, source=config.name)
    if dry_run:
        for name, text in files.items():
            click.echo(f"### {name}")
            click.echo(text, nl=False)
        return
    for path in write(files, output):
        click.echo(f"wrote {path}")
    if uses_fixed_maps(cfg) and cfg.data.manifest is not None:
        from drnngen.bind import repeat_weights

        click.echo(f"page->item map: {repeat_weights(cfg)} (caffe train --weights it)")


@click.command()
@config_argument
@click.option("-o", "--output", type=output_path(dir_okay=False), required=True,
              help="Picture to write: .svg, .png or .dot (Graphviz).")
@data_option
def draw(config: Path, output: Path, data: Path | None) -> None:
    """Draw the net of CONFIG: states left to right, shared weights dashed."""
    from drnngen.codegen.draw import render_picture

    render_picture(_load(config, data), output)
    click.echo(f"wrote {output}")
