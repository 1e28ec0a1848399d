"""Session data: click-log readers → windows, dwell, history → Caffe HDF5 + manifest.json.

Public entry points: `prepare` (a log → a dataset folder), `load_manifest` (a dataset
folder → `Manifest`, whose `sources(w)` gives the HDF5 list files of window w) and
`synthesize` (a seeded realistic log).
"""
