#!/usr/bin/python3
"""An independent safetensors reader, written from the format description.

It shares no code with engine/checkpoint/safetensors.cc, so that a test can
check that what the C++ writer produces is what the format says, not merely
what the C++ reader expects. Only json, struct and numpy are used.

Format (https://github.com/huggingface/safetensors): an unsigned 64-bit
little-endian header length N, N bytes of UTF-8 JSON, then the data buffer.
The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin,
end]} with offsets relative to the start of the buffer; the optional
"__metadata__" key maps strings to strings. Data is little-endian, C order.

CLI:
    /usr/bin/python3 tests/safetensors_reader.py FILE --expect EXPECT.json

EXPECT.json:
    {"tensors": {"name": {"dtype": "F32", "shape": [2, 3],
                          "values": [flat list, C order]}, ...},
     "metadata": {"key": "value"}}          # optional
Values are compared exactly: integers as integers, floats bit for bit after
conversion to float64 (so -0.0 != 0.0); the strings "nan", "inf" and "-inf"
stand for values JSON cannot hold. The tensor names must match exactly. Exits
0 if everything matches, 1 (with a message per mismatch) otherwise, 2 if the
file cannot be read.
"""

import argparse
import json
import math
import struct
import sys

import numpy as np

# dtype name -> numpy dtype of the stored bytes (little-endian).
_STORAGE = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # converted below
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("u1"),
}
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


class FormatError(Exception):
    pass


def _decode(dtype, raw, shape):
    array = np.frombuffer(raw, dtype=_STORAGE[dtype])
    if dtype == "BF16":
        # bfloat16 is the upper half of a float32.
        array = (array.astype(np.uint32) << 16).view(np.float32)
    elif dtype == "BOOL":
        array = array.astype(bool)
    return array.reshape(shape)


def read_safetensors(path):
    """Returns ({name: np.ndarray}, {metadata key: value})."""
    tensors, metadata, _ = _read(path)
    return tensors, metadata


def _read(path):
    """Returns (tensors, metadata, {name: stored dtype name})."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise FormatError(f"{len(data)} bytes, no room for the header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise FormatError(f"header length {header_len} exceeds the file")
    header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object")
    buffer = data[8 + header_len :]

    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise FormatError("__metadata__ is not a map of strings")

    tensors, dtypes = {}, {}
    for name, info in header.items():
        dtype = info["dtype"]
        if dtype not in _STORAGE:
            raise FormatError(f"{name}: unsupported dtype {dtype}")
        shape = [int(d) for d in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
        if any(d < 0 for d in shape):
            raise FormatError(f"{name}: negative dimension in {shape}")
        if not 0 <= begin <= end <= len(buffer):
            raise FormatError(f"{name}: offsets [{begin}, {end}] outside the buffer")
        if end - begin != math.prod(shape) * _STORAGE[dtype].itemsize:
            raise FormatError(f"{name}: {end - begin} bytes for shape {shape} {dtype}")
        tensors[name] = _decode(dtype, buffer[begin:end], shape)
        dtypes[name] = dtype
    return tensors, metadata, dtypes


def _expected_float_bits(values):
    special = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
    floats = [special[v] if isinstance(v, str) else float(v) for v in values]
    return np.array(floats, dtype=np.float64)


def _compare_values(name, dtype, actual, values):
    flat = actual.reshape(-1)
    if flat.size != len(values):
        return [f"{name}: {flat.size} values, expected {len(values)}"]
    if dtype in _FLOAT_DTYPES:
        got = flat.astype(np.float64)
        want = _expected_float_bits(values)
        both_nan = np.isnan(got) & np.isnan(want)
        differ = (got.view(np.uint64) != want.view(np.uint64)) & ~both_nan
        return [
            f"{name}[{i}]: got {got[i]!r}, expected {want[i]!r}" for i in np.flatnonzero(differ)
        ]
    errors = []
    for i, (got, want) in enumerate(zip(flat.tolist(), values)):
        # Python compares int with int or float exactly.
        if isinstance(want, str) or int(got) != want:
            errors.append(f"{name}[{i}]: got {got!r}, expected {want!r}")
    return errors


def compare(tensors, metadata, dtypes, expect):
    """Returns a list of mismatch messages (empty if everything matches)."""
    errors = []
    want_tensors = expect.get("tensors", {})
    for name in sorted(set(tensors) - set(want_tensors)):
        errors.append(f"{name}: unexpected tensor")
    for name in sorted(set(want_tensors) - set(tensors)):
        errors.append(f"{name}: missing")
    for name in sorted(set(tensors) & set(want_tensors)):
        want, actual = want_tensors[name], tensors[name]
        if dtypes[name] != want["dtype"]:
            errors.append(f"{name}: dtype {dtypes[name]}, expected {want['dtype']}")
        elif list(actual.shape) != list(want["shape"]):
            errors.append(f"{name}: shape {list(actual.shape)}, expected {want['shape']}")
        else:
            errors.extend(_compare_values(name, want["dtype"], actual, want["values"]))
    if "metadata" in expect and metadata != expect["metadata"]:
        errors.append(f"metadata {metadata!r}, expected {expect['metadata']!r}")
    return errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--expect", required=True, help="JSON file of expected tensors")
    args = parser.parse_args(argv)
    try:
        tensors, metadata, dtypes = _read(args.file)
    except (OSError, ValueError, KeyError, TypeError, FormatError) as e:
        print(f"error: cannot read {args.file}: {e}", file=sys.stderr)
        return 2
    with open(args.expect, encoding="utf-8") as f:
        expect = json.load(f)
    errors = compare(tensors, metadata, dtypes, expect)
    for error in errors:
        print(f"mismatch: {args.file}: {error}", file=sys.stderr)
    if errors:
        return 1
    print(f"ok: {args.file}: {len(tensors)} tensors match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
