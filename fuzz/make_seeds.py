#!/usr/bin/env python3
"""Writes the generated seeds of fuzz/corpus/ (run from anywhere; rewrites
them in place). Safetensors files and protobuf messages are encoded by hand,
so that the seeds do not depend on our own writer; the hand-written seeds (config
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


def varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def translate_request(model, sentences, beam=0, hypotheses=0, max_length=0, scores=False,
                      penalty=None):
    """quantmt.v1.TranslateRequest in wire format, encoded by hand, followed
    by the two bytes fuzz_translate_request reads from the end: parse the
    message (1), with a default model (1)."""
    options = b""
    for number, value in ((1, beam), (2, hypotheses), (3, max_length), (4, int(scores))):
        if value:
            options += varint(number << 3) + varint(value)
    if penalty is not None:
        options += varint(5 << 3 | 5) + struct.pack("<f", penalty)
    message = field(1, model.encode()) if model else b""
    for sentence in sentences:
        message += field(2, sentence.encode())
    message += field(3, options)
    return message + b"\x01\x01"


def write_request_seeds():
    out = CORPUS / "fuzz_translate_request"
    out.mkdir(parents=True, exist_ok=True)
    requests = {
        "two_sentences": translate_request("de-en", ["Ein Hund rennt.", "Zwei Katzen."]),
        "default_model_beam": translate_request("", ["Guten Morgen!"], beam=5, hypotheses=2,
                                                max_length=40, scores=True, penalty=0.6),
        "greedy_unicode": translate_request("de-en", ["Straße, 日本語 und 🐕"], beam=1),
        "empty_sentence": translate_request("de-en", [""]),
    }
    for name, data in requests.items():
        (out / f"{name}.bin").write_bytes(data)


def write_safetensors_seeds():
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
    write_safetensors_seeds()
    write_request_seeds()
