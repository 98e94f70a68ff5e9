#!/usr/bin/env python3
"""Writes the generated seeds of fuzz/corpus/ (run from anywhere; rewrites
them in place). Safetensors files are built with struct and json alone, so
that the seeds do not depend on our own writer; the hand-written seeds (config
texts, tokenizer text) sit beside them in the corpus folders."""
import json
import pathlib
import struct

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"

DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4,
               "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def safetensors(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape). Data bytes count up from 1."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        size = DTYPE_SIZES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    data = bytes((i + 1) % 256 for i in range(offset))
    return struct.pack("<Q", len(text)) + text + data


def model_like():
    """The tensor names and dtypes of a real checkpoint, in miniature."""
    tensors = [("encoder.embed_tokens.weight", "F16", [16, 4])]
    for stack in ("encoder", "decoder"):
        prefix = f"{stack}.layers.0"
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            tensors.append((f"{prefix}.self_attn.{proj}.weight", "F16", [4, 4]))
            tensors.append((f"{prefix}.self_attn.{proj}.bias", "F16", [4]))
        tensors.append((f"{prefix}.self_attn_layer_norm.weight", "F16", [4]))
        tensors.append((f"{prefix}.fc1.weight", "F16", [8, 4]))
        tensors.append((f"{prefix}.fc2.weight", "F16", [4, 8]))
    return safetensors(tensors, {"format": "pt", "producer": "quantmt"})


def main():
    out = CORPUS / "fuzz_safetensors"
    out.mkdir(parents=True, exist_ok=True)
    seeds = {
        "one_f32_matrix": safetensors([("weight", "F32", [2, 3])], {"k": "v"}),
        "every_dtype": safetensors([(f"t_{d.lower()}", d, [2]) for d in DTYPE_SIZES]),
        "scalar_and_empty": safetensors([("scalar", "I64", []), ("empty", "F32", [0, 5])]),
        "no_tensors": safetensors([]),
        "unpadded_header": safetensors([("x", "U8", [3])], pad=False),
        "model_like": model_like(),
        # int8 weights with per-channel scales, as the INT8 schemes store them.
        "int8_with_scales": safetensors([("fc1.weight", "I8", [4, 4]),
                                         ("fc1.weight_scale", "F32", [4])]),
    }
    for name, data in seeds.items():
        (out / f"{name}.safetensors").write_bytes(data)


if __name__ == "__main__":
    main()
