#!/usr/bin/python3
"""PyTorch-Python eager reference for bench_distill: the same OSD and draft training steps
(stories15m shape, random init, LoRA, low-rank noise teachers, forward KL on response tokens,
AdamW) so tokens/s can be compared side by side. Prints one JSON line per configuration."""
import argparse, json, math, time
import torch
import torch.nn.functional as F

DIM, FFN, LAYERS, HEADS, VOCAB = 288, 768, 6, 6, 32000
HD = DIM // HEADS
MODS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def shapes():
    out = {}
    for l in range(LAYERS):
        for m, (o, i) in {"q_proj": (DIM, DIM), "k_proj": (DIM, DIM), "v_proj": (DIM, DIM),
                          "o_proj": (DIM, DIM), "gate_proj": (FFN, DIM), "up_proj": (FFN, DIM),
                          "down_proj": (DIM, FFN)}.items():
            out[(l, m)] = (o, i)
    return out


class Model:
    def __init__(self, seed):
        g = torch.Generator().manual_seed(seed)
        self.emb = torch.randn(VOCAB, DIM, generator=g) * 0.02
        self.head = torch.randn(VOCAB, DIM, generator=g) * 0.02
        self.w = {k: torch.randn(o, i, generator=g) * 0.02 for k, (o, i) in shapes().items()}
        inv = 1.0 / (10000.0 ** (torch.arange(0, HD, 2).float() / HD))
        self.inv_freq = inv

    def forward_hidden(self, ids, deltas):
        b, t = ids.shape
        x = self.emb[ids]
        pos = torch.arange(t).float()
        f = torch.outer(pos, self.inv_freq)
        emb = torch.cat([f, f], -1)
        cos, sin = emb.cos(), emb.sin()
        mask = torch.full((t, t), float("-inf")).triu(1)

        def lin(h, l, m):
            y = h @ self.w[(l, m)].t()
            for d in deltas.get((l, m), []):
                y = y + d(h)
            return y

        def rms(h):
            return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)

        def rope(q):
            q1, q2 = q[..., : HD // 2], q[..., HD // 2:]
            return q * cos + torch.cat([-q2, q1], -1) * sin

        for l in range(LAYERS):
            h = rms(x)
            q = lin(h, l, "q_proj").view(b, t, HEADS, HD).transpose(1, 2)
            k = lin(h, l, "k_proj").view(b, t, HEADS, HD).transpose(1, 2)
            v = lin(h, l, "v_proj").view(b, t, HEADS, HD).transpose(1, 2)
            q, k = rope(q), rope(k)
            a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HD) + mask, -1) @ v
            x = x + lin(a.transpose(1, 2).reshape(b, t, DIM), l, "o_proj")
            h = rms(x)
            x = x + lin(F.silu(lin(h, l, "gate_proj")) * lin(h, l, "up_proj"), l, "down_proj")
        return rms(x)


def lora(modules, r, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    params, deltas = [], {}
    for (l, m), (o, i) in shapes().items():
        if m not in modules:
            continue
        a = (torch.rand(r, i, generator=g) * 2 - 1) / math.sqrt(i)
        b = torch.zeros(o, r)
        a.requires_grad_(True), b.requires_grad_(True)
        params += [a, b]
        s = alpha / r
        deltas[(l, m)] = [lambda h, a=a, b=b, s=s: s * ((F.dropout(h, 0.1, True) @ a.t()) @ b.t())]
    return params, deltas


def noise(seed, rank=8, sigma=0.1):
    g = torch.Generator().manual_seed(seed)
    deltas = {}
    for (l, m), (o, i) in shapes().items():
        a = torch.randn(rank, i, generator=g) * sigma
        b = torch.randn(o, rank, generator=g) * sigma
        deltas[(l, m)] = [lambda h, a=a, b=b: (h @ a.t()) @ b.t()]
    return deltas


def merge(*ds):
    out = {}
    for d in ds:
        for k, v in d.items():
            out.setdefault(k, []).extend(v)
    return out


def kl_loss(student_rows, teacher_rows_list):
    ls = F.log_softmax((student_rows @ STUDENT_HEAD.t()).float(), -1)
    total = 0
    for tl in teacher_rows_list:
        total = total + F.kl_div(ls, tl, reduction="batchmean", log_target=True)
    return total / len(teacher_rows_list)


def run(kind, threads, batch, prompt, resp, steps, dtype):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    target = Model(1)
    t = prompt + resp
    ids = torch.randint(3, VOCAB, (batch, t))
    sel = torch.zeros(batch, t, dtype=torch.bool)
    sel[:, prompt - 1: t - 1] = True
    if kind == "osd":
        student, params, ld = target, *lora(["q_proj", "v_proj"], 16, 32, 2)
        n_teachers = 2
    else:
        student = Model(3)
        params, ld = lora(MODS, 16, 32, 2)
        n_teachers = 1
    global STUDENT_HEAD
    STUDENT_HEAD = student.head
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    times = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        # bf16: CPU autocast around the forwards, as the C++ trainer's dtype "bf16"
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
            with torch.no_grad():
                teachers = []
                for k in range(n_teachers):
                    h = target.forward_hidden(ids, noise(100 * s + k))[sel]
                    teachers.append(F.log_softmax((h @ target.head.t()).float(), -1))
            h = student.forward_hidden(ids, ld)[sel]
            loss = kl_loss(h, teachers)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if s > 0:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    return {"impl": "python", "kind": kind, "threads": threads, "dtype": dtype, "step_s": med,
            "tokens_per_s": batch * t / med}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--response", type=int, default=96)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dtypes", nargs="+", default=["f32", "bf16"])
    a = ap.parse_args()
    for kind in ["osd", "draft"]:
        for dt in a.dtypes:
            for th in a.threads:
                print(json.dumps(run(kind, th, a.batch, a.prompt, a.response, a.steps, dt)),
                      flush=True)
