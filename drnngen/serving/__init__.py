"""`drnngen serve` and `drnngen update`: the paper's real-time recommendation module.

Modules: `model` (which weights a run serves), `state` (one live session, changed in place
per event), `store` (SQLite WAL or Redis), `samples` (the completed sessions' sample log),
`service` (events → recommendations, no HTTP), `app` (the FastAPI routes), `server` (the
running pieces, reload, signals), `update` (fine-tune, evaluate, swap). Rows come from
`drnngen.data.live`; the net runs in `drnngen.runner.serving`'s Caffe child.
"""
