"""Message values: msgpack, plus numpy arrays through an extension type.

A message is encoded once, when the game hands it over, so that a value msgpack cannot
carry raises ``TypeError`` at that call and never later inside ``tick()``.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack
import numpy as np

from .errors import ProtocolError

#: msgpack extension type code of a numpy array: payload is msgpack [dtype.str, shape, bytes].
NUMPY_EXT: Final = 1

# Only plain numeric and boolean dtypes: an object dtype would mean pickle, never on our wire.
_ALLOWED_KINDS: Final = frozenset("biufc")
_MAX_DIMS: Final = 16
#: Deepest nesting of lists and maps a message from the network may have. msgpack's own
#: limit (1024) is far past what Python's str(), repr() or == survive.
MAX_DEPTH: Final = 32


def check_depth(value: object, limit: int = MAX_DEPTH) -> None:
    """Raise ProtocolError for a value nested deeper than ``limit`` (no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if type(item) is list:
            children: Any = item
        elif type(item) is dict:
            children = [*item.keys(), *item.values()]
        else:
            continue
        if depth > limit:
            raise ProtocolError(f"value nested deeper than {limit}")
        for child in children:
            if type(child) is list or type(child) is dict:
                push((child, depth + 1))


def _default(obj: object) -> object:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise TypeError(
                f"numpy arrays of dtype {obj.dtype} cannot be sent (numeric dtypes only)")
        arr = obj if obj.flags.c_contiguous else obj.copy(order="C")  # keeps 0-d arrays 0-d
        body = msgpack.packb([arr.dtype.str, list(arr.shape), arr.tobytes()], use_bin_type=True)
        return msgpack.ExtType(NUMPY_EXT, body)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):  # pragma: no cover - msgpack turns tuples into lists itself
        return list(obj)
    raise TypeError(
        f"a message cannot contain {type(obj).__name__!r}: use None, bool, int, float, str, "
        "bytes, list, dict or numpy arrays"
    )


def numpy_ext_hook(code: int, data: bytes) -> object:
    if code != NUMPY_EXT:
        raise ProtocolError(f"unknown extension type {code}")
    parts = msgpack.unpackb(data, raw=False, use_list=True)
    if not (isinstance(parts, list) and len(parts) == 3):
        raise ProtocolError("bad numpy extension")
    dtype_str, shape, raw = parts
    if not (isinstance(dtype_str, str) and isinstance(shape, list) and isinstance(raw, bytes)):
        raise ProtocolError("bad numpy extension fields")
    if len(shape) > _MAX_DIMS or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ProtocolError("bad numpy shape")
    try:
        dtype = np.dtype(dtype_str)
    except TypeError as exc:
        raise ProtocolError("bad numpy dtype") from exc
    if dtype.kind not in _ALLOWED_KINDS or dtype.hasobject:
        raise ProtocolError("numpy dtype not allowed")
    count = 1
    for n in shape:
        count *= n
    if count * dtype.itemsize != len(raw):
        raise ProtocolError("numpy data size does not match shape")
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(shape)).copy()


def encode_value(value: object) -> bytes:
    """Encode one message value; raises TypeError for anything that cannot be sent."""
    try:
        return msgpack.packb(value, default=_default, use_bin_type=True)
    except TypeError:
        raise
    except (ValueError, OverflowError) as exc:
        raise TypeError(f"message cannot be encoded: {exc}") from exc


class Encoder:
    """encode_value with a packer of its own: packb builds a new packer on every call.

    Not for sharing between threads (no engine object is).
    """

    __slots__ = ("_packer",)

    def __init__(self) -> None:
        self._packer = msgpack.Packer(default=_default, use_bin_type=True)

    def encode(self, value: object) -> bytes:
        try:
            return self._packer.pack(value)
        except TypeError:
            self._packer.reset()
            raise
        except (ValueError, OverflowError) as exc:
            self._packer.reset()
            raise TypeError(f"message cannot be encoded: {exc}") from exc


def decode_value(data: bytes) -> Any:
    """Decode bytes from the network; any malformation becomes ProtocolError."""
    try:
        value = msgpack.unpackb(
            data, ext_hook=numpy_ext_hook, raw=False, strict_map_key=False, use_list=True
        )
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises many kinds; all mean "malformed"
        raise ProtocolError(f"undecodable msgpack: {type(exc).__name__}") from exc
    if type(value) is list or type(value) is dict:
        check_depth(value)
    return value
