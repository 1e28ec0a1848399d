"""Caffe's own schema (caffe.proto), loaded into a private descriptor pool.

setup.py compiles caffe.proto from Caffe's source package into
`caffe_schema.desc` at install time. A private pool keeps these classes apart
from pycaffe's `caffe_pb2` (same message names) when both live in one process.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from drnngen.errors import EnvironmentProblem, UserError

SCHEMA_FILE = Path(__file__).resolve().parent / "caffe_schema.desc"


@functools.lru_cache(maxsize=1)
def _pool() -> descriptor_pool.DescriptorPool:
    try:
        data = SCHEMA_FILE.read_bytes()
    except FileNotFoundError:
        raise EnvironmentProblem(
            f"Caffe schema {SCHEMA_FILE.name} is missing; reinstall drnngen (make venv) to compile it"
        ) from None
    pool = descriptor_pool.DescriptorPool()
    for proto in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(proto)
    return pool


def descriptor(name: str) -> Descriptor:
    """The descriptor of a caffe message, e.g. `LayerParameter`."""
    return _pool().FindMessageTypeByName(f"caffe.{name}")


def message_class(name: str) -> type[Message]:
    desc = descriptor(name)
    get = getattr(message_factory, "GetMessageClass", None)
    if get is not None:
        cls: type[Message] = get(desc)
    else:  # protobuf < 4.22
        cls = message_factory.MessageFactory(_pool()).GetPrototype(desc)  # type: ignore[attr-defined]
    return cls


def parse(text: str, kind: str, filename: str) -> Any:
    """Parse prototxt text into caffe.`kind` (NetParameter, SolverParameter)."""
    try:
        parsed = _parse(text, kind)
    except text_format.ParseError as exc:
        raise UserError(f"{filename}: not a valid caffe.{kind}: {exc}") from None
    message = message_class(kind)()
    message.CopyFrom(parsed)  # the caller's own copy; copying is far cheaper than parsing
    return message


@functools.lru_cache(maxsize=4)
def _parse(text: str, kind: str) -> Message:
    """The text parsed once: generation reads each file back (render) and checks it (validate)."""
    message = message_class(kind)()
    text_format.Parse(text, message)
    return message


def field(desc: Descriptor, name: str) -> FieldDescriptor:
    """A field of a caffe message; unknown names are a bug in the generator."""
    try:
        return desc.fields_by_name[name]
    except KeyError:
        raise KeyError(f"caffe.{desc.name} has no field {name!r}") from None
