"""The peer of bench/gpu.ts, measured on the same GPU in the same run: bf16 matmul through
torch.matmul (cuBLAS) at the expert GEMM shapes, and torch's scaled_dot_product_attention (its
default backend) at the prefill shape. Writes JSON: python3 bench/gpu/peer.py OUT.json"""
import json
import sys

import torch


def timed(fn, reps=20):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main():
    dev = torch.device("cuda")
    out = {"device": torch.cuda.get_device_name(0), "matmul_ms": {}, "sdpa_ms": {}}
    # The expert up-projection at decode and prefill row counts, 256 rows (an expert's share of a
    # prefill chunk), and the Mamba in/out projections of a 4096-token chunk.
    shapes = [(m, 14336, 4096) for m in (1, 4, 16, 64, 256, 4096)] + [(4096, 16384, 4096), (4096, 4096, 8192)]
    for m, n, k in shapes:
        w = torch.randn(k, n, device=dev, dtype=torch.bfloat16) * 0.02
        a = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
        out["matmul_ms"][f"{m},{n},{k}"] = timed(lambda: torch.matmul(a, w))
    t, h, kv, d = 4096, 32, 8, 128
    q = torch.randn(1, h, t, d, device=dev, dtype=torch.bfloat16)
    kk = torch.randn(1, kv, t, d, device=dev, dtype=torch.bfloat16).repeat_interleave(h // kv, dim=1)
    vv = torch.randn(1, kv, t, d, device=dev, dtype=torch.bfloat16).repeat_interleave(h // kv, dim=1)
    f = torch.nn.functional.scaled_dot_product_attention
    out["sdpa_ms"][f"{t},{h},{kv},{d}"] = timed(lambda: f(q, kk, vv, is_causal=True), reps=10)
    with open(sys.argv[1], "w") as fh:
        json.dump(out, fh)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
