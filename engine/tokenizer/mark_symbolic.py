#!/usr/bin/env python3
"""Copies a shared library with DF_SYMBOLIC set in its dynamic section.

A DF_SYMBOLIC library resolves the symbols it defines to its own definitions
first. For libsentencepiece, which bundles and exports its own protobuf-lite,
that is what RTLD_DEEPBIND gives the plugin (see tokenizer_loader.cc), without
the dlopen flag that sanitizer runtimes refuse.

Usage: mark_symbolic.py SOURCE.so DESTINATION.so
"""
import struct
import sys

PT_DYNAMIC = 2
DT_NULL = 0
DT_FLAGS = 30
DF_SYMBOLIC = 0x2


def mark_symbolic(data):
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    phoff = struct.unpack_from("<Q", data, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        header = phoff + i * phentsize
        if struct.unpack_from("<I", data, header)[0] != PT_DYNAMIC:
            continue
        offset, _, _, size = struct.unpack_from("<QQQQ", data, header + 8)
        for entry in range(offset, offset + size, 16):
            tag, value = struct.unpack_from("<qQ", data, entry)
            if tag == DT_NULL:
                break
            if tag == DT_FLAGS:
                struct.pack_into("<qQ", data, entry, tag, value | DF_SYMBOLIC)
                return
        raise ValueError("no DT_FLAGS entry to mark")
    raise ValueError("no dynamic section")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, destination = sys.argv[1:]
    data = bytearray(open(source, "rb").read())
    try:
        mark_symbolic(data)
    except ValueError as error:
        sys.exit(f"{source}: {error}")
    with open(destination, "wb") as out:
        out.write(data)


if __name__ == "__main__":
    main()
