"""Independent per-op references for tests/test_ops.cpp (llama.cpp's test-backend-ops habit):
each op written from its definition (transformers' Llama, PEFT's LoRA) in plain PyTorch and
evaluated in float64 on the inputs the C++ test used (already rounded to the tested dtype).

usage: ops.py CASES_JSON OUT_JSON
CASES_JSON: {case: {"op": str, "params": {...}, "inputs": {name: {"shape": [...], "data": [...]}}}}
OUT_JSON: {case: {name: {"shape": [...], "data": [...]}}}
"""
import json
import math
import sys

import torch


def tensor(j):
    return torch.tensor(j["data"], dtype=torch.float64).reshape(j["shape"])


def out(t):
    return {"shape": list(t.shape), "data": t.flatten().tolist()}


def rms_norm(i, p):
    x = i["x"]
    return {"y": i["weight"] * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + p["eps"])}


def llama3_inv_freq(p):
    """transformers' _compute_default_rope_parameters + _compute_llama3_parameters."""
    d = p["head_dim"]
    inv = 1.0 / (p["theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    s = p.get("scaling")
    if not s:
        return inv
    low_wavelen = s["original_max_position_embeddings"] / s["low_freq_factor"]
    high_wavelen = s["original_max_position_embeddings"] / s["high_freq_factor"]
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / s["factor"], inv)
    smooth = (s["original_max_position_embeddings"] / wavelen - s["low_freq_factor"]) / (
        s["high_freq_factor"] - s["low_freq_factor"]
    )
    smoothed = (1 - smooth) * scaled / s["factor"] + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def cos_sin(positions, p):
    freqs = positions.unsqueeze(-1) * llama3_inv_freq(p)  # [B, T, d/2]
    emb = torch.cat([freqs, freqs], -1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def rope(x, cos, sin):  # x [B, H, T, d], cos/sin [B, T, d]
    return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1)


def rope_op(i, p):
    cos, sin = cos_sin(i["positions"], p)
    return {"inv_freq": llama3_inv_freq(p), "y": rope(i["x"], cos, sin)}


def attention(i, p):
    """Grouped-query attention, eager as transformers: two calls sharing a KV cache."""
    h, hkv, d = p["heads"], p["kv_heads"], p["head_dim"]
    keys, values, outs = [], [], {}
    for step in ("1", "2"):
        x = i["x" + step]
        n, t, _ = x.shape
        q = (x @ i["wq"].T).view(n, t, h, d).transpose(1, 2)
        k = (x @ i["wk"].T).view(n, t, hkv, d).transpose(1, 2)
        v = (x @ i["wv"].T).view(n, t, hkv, d).transpose(1, 2)
        cos, sin = cos_sin(i["positions" + step], p)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        keys.append(k)
        values.append(v)
        k_all = torch.cat(keys, 2).repeat_interleave(h // hkv, dim=1)
        v_all = torch.cat(values, 2).repeat_interleave(h // hkv, dim=1)
        scores = q @ k_all.transpose(2, 3) / math.sqrt(d) + i["mask" + step]
        o = torch.softmax(scores, -1) @ v_all
        outs["y" + step] = o.transpose(1, 2).reshape(n, t, h * d) @ i["wo"].T
    return outs


def swiglu(i, p):
    x = i["x"]
    gate = x @ i["gate"].T
    return {"y": (torch.nn.functional.silu(gate) * (x @ i["up"].T)) @ i["down"].T}


def low_rank_delta(i, p):
    """LoRA (PEFT) and low-rank noise share the form scale * B (A x)."""
    return {"y": p["scale"] * (i["x"] @ i["a"].T) @ i["b"].T}


OPS = {
    "rms_norm": rms_norm,
    "rope": rope_op,
    "attention": attention,
    "swiglu": swiglu,
    "lora_delta": low_rank_delta,
    "noise_delta": low_rank_delta,
}


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    results = {}
    for name, case in cases.items():
        inputs = {k: tensor(v) for k, v in case["inputs"].items()}
        outputs = OPS[case["op"]](inputs, case.get("params", {}))
        results[name] = {k: out(v) for k, v in outputs.items()}
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
