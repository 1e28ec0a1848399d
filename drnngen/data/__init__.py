"""Session data: click-log readers → sessions, windows, dwell, history → Caffe HDF5 + manifest.json.

Modules, in pipeline order: `textscan` and `otto` (vectorised parsing), `readers` (formats →
`EventLog`), `sessions` (sort, split, vocabularies, dwell, samples), `store` (the
window-independent samples), `windows` (per-window HDF5 files), `manifest` (the dataset
and its window cache), `prepare` (the whole conversion), `prefixes` (a log's prefixes as rows of a
prepared dataset, for `recommend` and `score`), `live` (one live session's prefix as a row,
for `serve`), `synth` (synthetic logs).
"""

from drnngen.data.manifest import Manifest, load_manifest
from drnngen.data.prepare import PrepareOptions, PrepareReport, prepare
from drnngen.data.readers import LogSpec
from drnngen.data.sessions import BuildOptions
from drnngen.data.synth import SynthOptions, synthesize

__all__ = [
    "BuildOptions",
    "LogSpec",
    "Manifest",
    "PrepareOptions",
    "PrepareReport",
    "SynthOptions",
    "load_manifest",
    "prepare",
    "synthesize",
]
