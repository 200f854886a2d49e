#!/usr/bin/env python3
"""Writes kiln's FP8 test fixtures with PyTorch, independently of kiln.

Run on the GPU machine (torch, safetensors and, optionally, transformers installed; no internet):

    python3 scripts/make_fp8_fixtures.py --shared ../shared --out tests/data/fp8

It writes (about 1.7 MB in all):

  e4m3_cases.safetensors     x (F32 [N]): float32 inputs: every E4M3 value, every midpoint between
                             neighbours and the float32 values next to it, both signs, random values
                             over every binade, overflow / inf / NaN / tiny values;
                             torch (U8 [N]): x.to(torch.float8_e4m3fn) as bits;
                             torch_sat (U8 [N]): x.clamp(-448, 448).to(torch.float8_e4m3fn) as bits.
  tinystories-block/         tinystories-656k in the block-FP8 format (quant_method "fp8",
                             weight_block_size [128, 128], dynamic activations; `*.weight` F8_E4M3 +
                             `*.weight_scale_inv` F32), embeddings and norms as BF16 (lm_head tied).
  stories260k-ct-tensor/     stories260K as compressed-tensors: per-tensor `weight_scale` [1] and a
                             static per-tensor `input_scale` [1] calibrated on the reference ids.
  stories260k-ct-channel/    stories260K as compressed-tensors: per-channel `weight_scale` [out, 1],
                             dynamic per-token activations.

Each checkpoint directory also has expected.safetensors:
  input_ids (I64 [T]); emulated_logits (F32 [T, vocab]): the checkpoint run in float32 by
  transformers' LlamaForCausalLM on the CPU with every projection's weight replaced by its
  dequantization (fp8 value x scale) and its input quantized as the format says (per token and
  128-column group for block weights, per token for dynamic, with input_scale for static) --
  PyTorch's own rendition of the W8A8 math; hf_logits (F32 [T, vocab], only where transformers can
  run the quantized checkpoint itself on the GPU: its FineGrainedFP8 path for the block format,
  compressed-tensors when that package is installed);
and expected.json: {"hf_logits_dtype": ..., "hf_error": ..., "dequant_fnv1a64": {tensor: hex}},
the FNV-1a 64 hash of each projection's dequantized float32 weights (little-endian bytes), so that
kiln's dequantization can be compared bit for bit without storing the dense weights.

Scales follow the usual recipe (llm-compressor, vLLM, DeepSeek): scale = amax / 448 in float32 (1.0
for an all-zero group), stored value = (w / scale).clamp(-448, 448).to(float8_e4m3fn).
"""

import argparse
import json
import math
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file

FP8 = torch.float8_e4m3fn
PROJ = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def scale_of(amax):
    amax = amax.float()
    return torch.where(amax > 0, amax / 448.0, torch.ones_like(amax))


def to_fp8(x, scale):
    return (x / scale).clamp(-448.0, 448.0).to(FP8)


def quant_tensor(w):
    s = scale_of(w.abs().amax()).reshape(1)
    return to_fp8(w, s), s


def quant_channel(w):
    s = scale_of(w.abs().amax(dim=1, keepdim=True))  # [out, 1]
    return to_fp8(w, s), s


def expand_block(s, shape, b=128):
    return s.repeat_interleave(b, 0)[: shape[0]].repeat_interleave(b, 1)[:, : shape[1]]


def quant_block(w, b=128):
    out, inn = w.shape
    rows, cols = -(-out // b), -(-inn // b)
    padded = torch.zeros(rows * b, cols * b, dtype=torch.float32)
    padded[:out, :inn] = w
    amax = padded.reshape(rows, b, cols, b).abs().amax(dim=(1, 3))
    s = scale_of(amax)  # [rows, cols]
    q = to_fp8(w, expand_block(s, w.shape, b))
    return q, s


def dequant(q, s, kind):
    v = q.to(torch.float32)
    if kind == "block":
        return v * expand_block(s, q.shape)
    return v * s  # [1] or [out, 1] broadcast


def fnv1a64(t):
    h = 0xCBF29CE484222325
    for byte in t.contiguous().numpy().astype("<f4").tobytes():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


# ---- E4M3 conversion table --------------------------------------------------------------------

def e4m3_cases(path):
    codes = torch.arange(256, dtype=torch.uint8)
    values = codes.view(FP8).to(torch.float32)
    finite = values[torch.isfinite(values)]
    pos = torch.unique(finite[finite >= 0]).sort().values.double()
    mids = ((pos[1:] + pos[:-1]) / 2).float()
    parts = [finite, mids]
    for m in (mids,):
        parts.append(torch.nextafter(m, torch.zeros_like(m)))
        parts.append(torch.nextafter(m, torch.full_like(m, 1e9)))
    g = torch.Generator().manual_seed(0)
    mant = 1 + torch.rand(6000, generator=g)
    expo = torch.randint(-14, 11, (6000,), generator=g).float()
    parts.append(mant * torch.pow(2.0, expo))
    parts.append(torch.tensor([448.0, 450.0, 464.0, 464.0001, 470.0, 479.9, 480.0, 1e4, 1e30,
                               float("inf"), float("nan"), 1e-30, 1e-45, 2.0 ** -10,
                               3 * 2.0 ** -10, 2.0 ** -6 - 2.0 ** -12]))
    x = torch.cat([p.float() for p in parts])
    x = torch.cat([x, -x])
    torch_bits = x.to(FP8).view(torch.uint8)
    sat_bits = x.clamp(-448.0, 448.0).to(FP8).view(torch.uint8)
    save_file({"x": x.contiguous(), "torch": torch_bits.contiguous(),
               "torch_sat": sat_bits.contiguous()}, path, metadata={"format": "pt"})
    print("wrote", path, x.numel(), "cases")


# ---- checkpoints ------------------------------------------------------------------------------

def load_dense(model_dir):
    sd = load_file(os.path.join(model_dir, "model.safetensors"))
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    return sd, config


def calibrate_input_amax(model_dir, ids):
    """amax of each projection's input over `ids`, from the dense model in transformers."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    amax = {}
    hooks = []
    for name, mod in model.named_modules():
        if any(name.endswith(p) for p in PROJ):
            def hook(m, args, name=name):
                amax[name] = max(amax.get(name, 0.0), args[0].abs().max().item())
            hooks.append(mod.register_forward_pre_hook(hook))
    with torch.no_grad():
        model(torch.tensor([ids]))
    for h in hooks:
        h.remove()
    return amax


def act_quant(x, scheme, static_scale=None):
    if scheme == "static":
        s = torch.tensor(static_scale, dtype=torch.float32)
        return to_fp8(x, s).float() * s
    if scheme == "group":
        shape = x.shape
        g = x.reshape(*shape[:-1], shape[-1] // 128, 128)
        s = scale_of(g.abs().amax(dim=-1, keepdim=True))
        return (to_fp8(g, s).float() * s).reshape(shape)
    s = scale_of(x.abs().amax(dim=-1, keepdim=True))
    return to_fp8(x, s).float() * s


def emulated_logits(dense_dir, dequantized, scheme, input_scales, ids):
    """transformers' float32 Llama with dequantized weights and fake-quantized projection inputs."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(dense_dir, dtype=torch.float32).eval()
    sd = model.state_dict()
    for name, w in dequantized.items():
        if name in sd:
            sd[name].copy_(w)
    for name, mod in model.named_modules():
        if any(name.endswith(p) for p in PROJ):
            def pre(m, args, name=name):
                return (act_quant(args[0], scheme, input_scales.get(name + ".input_scale")),)
            mod.register_forward_pre_hook(pre)
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float()


def hf_quantized_logits(ckpt_dir, ids):
    """Logits of transformers running the quantized checkpoint itself (GPU); (logits, dtype, err)."""
    if not torch.cuda.is_available():
        return None, None, "no CUDA device"
    from transformers import AutoModelForCausalLM
    err = None
    for dtype in (torch.float32, torch.bfloat16):
        try:
            model = AutoModelForCausalLM.from_pretrained(ckpt_dir, dtype=dtype,
                                                         device_map="cuda").eval()
            with torch.no_grad():
                logits = model(torch.tensor([ids], device="cuda")).logits[0].float().cpu()
            if torch.isfinite(logits).all():
                return logits, str(dtype), None
            err = "non-finite logits in %s" % dtype
        except Exception as e:  # transformers / kernels missing, dtype unsupported, ...
            err = "%s: %s" % (type(e).__name__, str(e)[:300])
    return None, None, err


def write_checkpoint(out_dir, dense_dir, kind, ids, input_amax=None, dense_dtype=torch.bfloat16):
    """kind: block | ct-tensor (static input scale) | ct-channel (dynamic per token)."""
    sd, config = load_dense(dense_dir)
    os.makedirs(out_dir, exist_ok=True)
    tensors, dequantized, hashes, input_scales = {}, {}, {}, {}
    layers = config["num_hidden_layers"]
    for name, w in sd.items():
        module = name[: -len(".weight")] if name.endswith(".weight") else None
        if module is not None and any(module.endswith(p) for p in PROJ):
            w = w.float()
            if kind == "block":
                q, s = quant_block(w)
                tensors[module + ".weight_scale_inv"] = s.contiguous()
            elif kind == "ct-tensor":
                q, s = quant_tensor(w)
                tensors[module + ".weight_scale"] = s.contiguous()
                amax = input_amax[module]
                isc = amax / 448.0 if amax > 0 else 1.0
                input_scales[module + ".input_scale"] = isc
                tensors[module + ".input_scale"] = torch.tensor([isc], dtype=torch.float32)
            else:
                q, s = quant_channel(w)
                tensors[module + ".weight_scale"] = s.contiguous()
            tensors[name] = q.contiguous()
            dq = dequant(q, s, "block" if kind == "block" else "other")
            dequantized[name] = dq
            hashes[name] = fnv1a64(dq)
        else:
            tensors[name] = w.to(dense_dtype).contiguous()
    if config.get("tie_word_embeddings") and "model.embed_tokens.weight" in tensors and \
            "lm_head.weight" in tensors:
        del tensors["lm_head.weight"]
    save_file(tensors, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    fp8 = {"num_bits": 8, "type": "float", "symmetric": True}
    if kind == "block":
        qc = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
              "weight_block_size": [128, 128]}
        scheme = "group"
    else:
        weights = dict(fp8, strategy="tensor" if kind == "ct-tensor" else "channel", dynamic=False)
        acts = dict(fp8, strategy="tensor", dynamic=False) if kind == "ct-tensor" else \
            dict(fp8, strategy="token", dynamic=True)
        qc = {"quant_method": "compressed-tensors", "format": "float-quantized",
              "quantization_status": "compressed",
              "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                                            "input_activations": acts}},
              "ignore": ["lm_head"]}
        scheme = "static" if kind == "ct-tensor" else "token"
    config["quantization_config"] = qc
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    # The emulation runs on the dense checkpoint's structure with the dense (non-projection)
    # tensors rounded as they are stored here (bf16), so it sees exactly this checkpoint.
    stored_dense = {n: t.float() for n, t in tensors.items()
                    if t.dtype != FP8 and not n.endswith("_scale") and
                    not n.endswith("_scale_inv")}
    stored_dense.update(dequantized)
    if "lm_head.weight" not in stored_dense and config.get("tie_word_embeddings"):
        stored_dense["lm_head.weight"] = stored_dense["model.embed_tokens.weight"]
    emu = emulated_logits(dense_dir, stored_dense, scheme, input_scales, ids)
    expected = {"input_ids": torch.tensor(ids, dtype=torch.int64), "emulated_logits": emu}
    hf, hf_dtype, hf_err = hf_quantized_logits(out_dir, ids)
    if hf is not None:
        expected["hf_logits"] = hf
    save_file(expected, os.path.join(out_dir, "expected.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump({"kind": kind, "hf_logits_dtype": hf_dtype, "hf_error": hf_err,
                   "torch_version": torch.__version__, "dequant_fnv1a64": hashes}, f, indent=1)
    print("wrote", out_dir, "hf logits:", hf_dtype or hf_err)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default="../shared", help="kiln's shared data directory")
    ap.add_argument("--out", required=True, help="output directory (tests/data/fp8)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    e4m3_cases(os.path.join(args.out, "e4m3_cases.safetensors"))

    tiny = os.path.join(args.shared, "models", "tinystories-656k")
    with open(os.path.join(tiny, "reference.json")) as f:
        p1 = json.load(f)["prompts"][1]
    tiny_ids = (p1["input_ids"] + p1["generated"])[:16]
    write_checkpoint(os.path.join(args.out, "tinystories-block"), tiny, "block", tiny_ids)

    s260 = os.path.join(args.shared, "models", "stories260K", "hf")
    ids_path = os.path.join(args.shared, "models", "stories260K", "greedy256.ids")
    with open(ids_path) as f:
        greedy = [int(t) for t in f.read().split()]
    s260_ids = [1] + greedy[:31]
    amax = calibrate_input_amax(s260, [1] + greedy[:128])
    write_checkpoint(os.path.join(args.out, "stories260k-ct-tensor"), s260, "ct-tensor", s260_ids,
                     input_amax=amax)
    write_checkpoint(os.path.join(args.out, "stories260k-ct-channel"), s260, "ct-channel",
                     s260_ids)
    total = 0
    for root, _, files in os.walk(args.out):
        total += sum(os.path.getsize(os.path.join(root, n)) for n in files)
    print("fixtures: %.2f MB in %s" % (total / 1e6, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
