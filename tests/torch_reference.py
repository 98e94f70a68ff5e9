#!/usr/bin/env python3
"""Independent reference: the same weights in PyTorch's own torch.nn layers.

For a pre-norm and a post-norm config, this script
  1. writes a random-weight model directory with quantmt-init-model,
  2. asks quantmt-dump-logits for the teacher-forced logits on fixed inputs,
  3. loads the weights with tests/safetensors_reader.py (not our C++ reader)
     into torch.nn.TransformerEncoderLayer / TransformerDecoderLayer,
  4. compares the logits: max |difference| must stay below 1e-4.

Usage: torch_reference.py INIT_MODEL_BIN DUMP_LOGITS_BIN WORK_DIR
"""
import json
import math
import os
import subprocess
import sys

try:
    import torch
    import torch.nn.functional as F
except ImportError:
    print("SKIP: python3-torch is not installed")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_reader import read_safetensors  # noqa: E402

TOLERANCE = 1e-4
CONFIGS = [
    {"name": "pre-norm relu sinusoidal", "flags": ["--norm=pre", "--activation=relu"]},
    {"name": "post-norm gelu learned untied", "flags": [
        "--norm=post", "--activation=gelu", "--positions=learned", "--separate_embeddings",
        "--untied_output"]},
]
SHAPE = ["--d_model=64", "--encoder_layers=3", "--decoder_layers=2", "--heads=4",
         "--ffn_dim=128", "--vocab_size=40", "--max_positions=32"]


def sinusoid(length, d):
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    rate = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
    table = torch.zeros(length, d, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * rate)
    table[:, 1::2] = torch.cos(pos * rate)
    return table.float()


def attention_weights(module, w, prefix):
    module.in_proj_weight.copy_(torch.cat([w[prefix + p + "_proj.weight"] for p in "qkv"]))
    module.in_proj_bias.copy_(torch.cat([w[prefix + p + "_proj.bias"] for p in "qkv"]))
    module.out_proj.weight.copy_(w[prefix + "out_proj.weight"])
    module.out_proj.bias.copy_(w[prefix + "out_proj.bias"])


def norm_weights(module, w, prefix):
    module.weight.copy_(w[prefix + ".weight"])
    module.bias.copy_(w[prefix + ".bias"])


def reference_logits(model_dir, source, target):
    config = json.load(open(os.path.join(model_dir, "config.json")))
    arrays, _ = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    w = {k: torch.from_numpy(v.copy()).float() for k, v in arrays.items()}
    arch, vocab = config["architecture"], config["vocab"]
    d = arch["d_model"]
    pre = arch["norm"] == "pre"
    act = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu}[arch["activation"]]
    eps = arch["layer_norm_eps"]

    def embed(ids, table, side):
        x = F.embedding(ids, table) * (math.sqrt(d) if arch["scale_embeddings"] else 1.0)
        if arch["positions"] == "learned":
            return x + w[side + ".embed_positions.weight"][: ids.shape[1]].unsqueeze(0)
        return x + sinusoid(ids.shape[1], d).unsqueeze(0)

    src_table = w["encoder.embed_tokens.weight"]
    tgt_table = src_table if arch["shared_embeddings"] else w["decoder.embed_tokens.weight"]
    pad_mask = source.eq(vocab["pad_id"])
    with torch.no_grad():
        x = embed(source, src_table, "encoder")
        for i, layer in enumerate(arch["encoder"]["layers"]):
            p = "encoder.layers.%d." % i
            # train() with dropout 0 keeps PyTorch on its plain (non fast-path) code.
            m = torch.nn.TransformerEncoderLayer(d, layer["heads"], layer["ffn_dim"], dropout=0.0,
                                                 activation=act, layer_norm_eps=eps,
                                                 batch_first=True, norm_first=pre).train()
            attention_weights(m.self_attn, w, p + "self_attn.")
            m.linear1.weight.copy_(w[p + "ffn.fc1.weight"]); m.linear1.bias.copy_(w[p + "ffn.fc1.bias"])
            m.linear2.weight.copy_(w[p + "ffn.fc2.weight"]); m.linear2.bias.copy_(w[p + "ffn.fc2.bias"])
            norm_weights(m.norm1, w, p + "self_attn_layer_norm")
            norm_weights(m.norm2, w, p + "final_layer_norm")
            x = m(x, src_key_padding_mask=pad_mask)
        if pre:
            x = F.layer_norm(x, (d,), w["encoder.layer_norm.weight"], w["encoder.layer_norm.bias"], eps)
        memory = x

        y = embed(target, tgt_table, "decoder")
        causal = torch.nn.Transformer.generate_square_subsequent_mask(target.shape[1])
        for i, layer in enumerate(arch["decoder"]["layers"]):
            p = "decoder.layers.%d." % i
            m = torch.nn.TransformerDecoderLayer(d, layer["heads"], layer["ffn_dim"], dropout=0.0,
                                                 activation=act, layer_norm_eps=eps,
                                                 batch_first=True, norm_first=pre).train()
            attention_weights(m.self_attn, w, p + "self_attn.")
            attention_weights(m.multihead_attn, w, p + "encoder_attn.")
            m.linear1.weight.copy_(w[p + "ffn.fc1.weight"]); m.linear1.bias.copy_(w[p + "ffn.fc1.bias"])
            m.linear2.weight.copy_(w[p + "ffn.fc2.weight"]); m.linear2.bias.copy_(w[p + "ffn.fc2.bias"])
            norm_weights(m.norm1, w, p + "self_attn_layer_norm")
            norm_weights(m.norm2, w, p + "encoder_attn_layer_norm")
            norm_weights(m.norm3, w, p + "final_layer_norm")
            y = m(y, memory, tgt_mask=causal, memory_key_padding_mask=pad_mask)
        if pre:
            y = F.layer_norm(y, (d,), w["decoder.layer_norm.weight"], w["decoder.layer_norm.bias"], eps)
        out = tgt_table if arch["tie_output_projection"] else w["decoder.output_projection.weight"]
        return F.linear(y, out)


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    init_model, dump_logits, work = sys.argv[1:]
    os.makedirs(work, exist_ok=True)
    worst = 0.0
    for seed, case in enumerate(CONFIGS, start=1):
        model_dir = os.path.join(work, "model%d" % seed)
        subprocess.run([init_model, "--output_dir=" + model_dir, "--seed=%d" % seed] + SHAPE +
                       case["flags"], check=True, stdout=subprocess.DEVNULL)
        dump = os.path.join(work, "logits%d.safetensors" % seed)
        subprocess.run([dump_logits, model_dir, dump], check=True)
        ours, _ = read_safetensors(dump)
        source = torch.from_numpy(ours["source_ids"].copy())
        target = torch.from_numpy(ours["target_ids"].copy())
        expected = reference_logits(model_dir, source, target)
        diff = (torch.from_numpy(ours["logits"].copy()) - expected).abs().max().item()
        print("%-32s max |quantmt - torch.nn| logit difference = %.3g" % (case["name"], diff))
        if not diff < TOLERANCE:
            print("FAIL: above the tolerance %g" % TOLERANCE)
            return 1
        worst = max(worst, diff)
    print("OK: all configs within %g (worst %.3g)" % (TOLERANCE, worst))
    return 0


if __name__ == "__main__":
    sys.exit(main())
