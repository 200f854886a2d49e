#!/usr/bin/env python3
"""HF transformers in bf16 against the float32 references of ../shared (the yardstick for kiln's
bf16 mode): per prompt max|Δ|/max|ref| of the logits and top-1 agreement, the same metric as
cuda_backend_test. Runs where torch + transformers are installed (the GPU machine); never used by
kiln itself.

  python3 scripts/hf_bf16_parity.py MODEL_DIR [MODEL_DIR ...]   (e.g. $KILN_SHARED/models/tiny-qwen2)
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def check(model_dir, dtype, attn, device):
    ref = load_file(f"{model_dir}/reference.safetensors")
    # Loaded as stored (bf16), then cast: the references were made this way, and it matters — the
    # RoPE inv_freq buffer is computed at load and rounded to the model's dtype by the cast.
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16,
                                                 attn_implementation=attn)
    model = model.to(device=device, dtype=dtype).eval()
    assert next(model.parameters()).dtype == dtype
    # The references' RoPE used inv_freq rounded to bf16 (the checkpoint's dtype), as kiln does;
    # this transformers keeps the buffer in float32, so round it the same way.
    for m in model.modules():
        if hasattr(m, "inv_freq"):
            m.inv_freq = m.inv_freq.to(torch.bfloat16).to(m.inv_freq.dtype)
            if hasattr(m, "original_inv_freq"):
                m.original_inv_freq = m.inv_freq.clone()
    worst, rows, agree = 0.0, 0, 0
    parts = []
    k = 0
    while f"p{k}.input_ids" in ref:
        ids = torch.cat([ref[f"p{k}.input_ids"].flatten(), ref[f"p{k}.generated_ids"].flatten()])
        want = ref[f"p{k}.logits"].float()
        with torch.no_grad():
            got = model(ids[None].long().to(device)).logits[0].float().cpu()
        got = got[: want.shape[0], : want.shape[1]]
        rel = ((got - want).abs().max() / want.abs().max()).item()
        worst = max(worst, rel)
        a = (got.argmax(-1) == want.argmax(-1)).sum().item()
        rows += want.shape[0]
        agree += a
        parts.append(f"p{k} {rel:.2e} top1 {100.0 * a / want.shape[0]:.1f}%")
        k += 1
    name = model_dir.rstrip("/").split("/")[-1]
    print(f"[hf-parity] {name} {device} {str(dtype).split('.')[-1]} {attn}: worst max|d|/max|ref| {worst:.2e}, "
          f"top-1 {100.0 * agree / max(rows, 1):.1f}% ({'; '.join(parts)})", flush=True)


def main():
    # float32 means float32: no TF32 tensor-core matmuls.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    devices = ["cuda"] if torch.cuda.is_available() else ["cpu"]
    for d in sys.argv[1:]:
        for device in devices:
            for dtype in (torch.float32, torch.bfloat16):
                for attn in ("eager", "sdpa"):
                    check(d, dtype, attn, device)


if __name__ == "__main__":
    main()
