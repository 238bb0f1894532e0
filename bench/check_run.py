"""Checks `clattn run` against an independent numpy float64 reference.

Usage: python3 bench/check_run.py build/tools/clattn TRIALS
Each trial draws a fresh random shape (batch, GQA ratio, lengths, head sizes,
mask, window, dtype, layout, variant, feature map), runs the command on .npy
files and compares O (and the log-sum-exp) with numpy. Needs numpy; it is a
developer's cross-check, not part of the test suite.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
tmp = tempfile.mkdtemp()
rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
exe = sys.argv[1]
def ref(q, k, v, causal, win, scale):
    B, Hq, Lq, D = q.shape; Hkv, Lk = k.shape[1], k.shape[2]; g = Hq // Hkv
    o = np.zeros((B, Hq, Lq, v.shape[3])); lse = np.full((B, Hq, Lq), -np.inf)
    i = np.arange(Lq)[:, None] + Lk - Lq; j = np.arange(Lk)[None, :]
    ok = np.ones((Lq, Lk), bool)
    l, r = win
    if causal: r = 0
    if l >= 0: ok &= j >= i - l
    if r >= 0: ok &= j <= i + r
    for b in range(B):
        for h in range(Hq):
            s = q[b, h].astype(np.float64) @ k[b, h // g].astype(np.float64).T * scale
            s = np.where(ok, s, -np.inf)
            m = s.max(axis=1, keepdims=True); m = np.where(np.isfinite(m), m, 0)
            p = np.exp(s - m); z = p.sum(axis=1, keepdims=True)
            o[b, h] = np.where(z > 0, p @ v[b, h // g].astype(np.float64) / np.where(z > 0, z, 1), 0)
            lse[b, h] = np.where(z[:, 0] > 0, np.log(np.where(z[:, 0] > 0, z[:, 0], 1)) + m[:, 0], -np.inf)
    return o, lse
def lref(q, k, v, causal, fm):
    phi = (lambda x: np.where(x > 0, x + 1, np.exp(np.minimum(x, 0)))) if fm == "elu1" else (lambda x: np.maximum(x, 0))
    B, Hq, Lq, D = q.shape; Hkv, Lk = k.shape[1], k.shape[2]; g = Hq // Hkv
    o = np.zeros((B, Hq, Lq, v.shape[3]))
    for b in range(B):
        for h in range(Hq):
            pq = phi(q[b, h].astype(np.float64)); pk = phi(k[b, h // g].astype(np.float64)); vv = v[b, h // g].astype(np.float64)
            a = pq @ pk.T
            if causal:
                i = np.arange(Lq)[:, None] + Lk - Lq; j = np.arange(Lk)[None, :]
                a = np.where(j <= i, a, 0)
            o[b, h] = (a @ vv) / (a.sum(axis=1, keepdims=True) + 1e-6)
    return o, None
worst = {}
for trial in range(int(sys.argv[2])):
    B = int(rng.integers(1, 3)); Hkv = int(rng.integers(1, 4)); g = int(rng.integers(1, 4)); Hq = Hkv * g
    Lq = int(rng.integers(1, 300)); Lk = int(rng.choice([Lq, int(rng.integers(1, 300))]))
    D = int(rng.choice([16, 40, 64, 72, 80, 128, 200])); Dv = int(rng.choice([D, int(rng.integers(1, 257))]))
    causal = bool(rng.integers(0, 2)); win = (-1, -1)
    if rng.integers(0, 3) == 0: win = (int(rng.integers(-1, 50)), int(rng.integers(-1, 50)))
    dt = rng.choice(["f32", "f16"]); layout = rng.choice(["bhsd", "bshd"]); variant = rng.choice(["naive", "tiled", "window", "linear"]); fm = rng.choice(["elu1", "relu"])
    npdt = np.float32 if dt == "f32" else np.float16
    q = rng.standard_normal((B, Hq, Lq, D)).astype(npdt); k = rng.standard_normal((B, Hkv, Lk, D)).astype(npdt)
    v = rng.standard_normal((B, Hkv, Lk, Dv)).astype(npdt)
    scale = float(rng.choice([0, 0.3]))
    if variant == "linear":
        win = (-1, -1)
        o, lse = lref(q, k, v, causal, fm)
    else:
        o, lse = ref(q, k, v, causal, win, scale if scale else 1 / np.sqrt(D))
    t = lambda a: a if layout == "bhsd" else a.transpose(0, 2, 1, 3).copy()
    for n, a in (("q", q), ("k", k), ("v", v)): np.save(os.path.join(tmp, n + ".npy"), t(a))
    cmd = [exe, "run", "-q", os.path.join(tmp, "q.npy"), "-k", os.path.join(tmp, "k.npy"), "-v", os.path.join(tmp, "v.npy"), "-o", os.path.join(tmp, "o.npy"),
           "--lse", os.path.join(tmp, "lse.npy"), "--variant", variant, "--layout", layout]
    if causal: cmd.append("--causal")
    if variant == "linear": cmd = [c for c in cmd if c not in ("--lse", os.path.join(tmp, "lse.npy"))] + ["--feature-map", fm]
    if win != (-1, -1): cmd += ["--window", f"{win[0]},{win[1]}"]
    if scale: cmd += ["--scale", str(scale)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode: print("FAILED", cmd, res.stderr); continue
    got = np.load(os.path.join(tmp, "o.npy")); assert got.dtype == npdt
    got = got.astype(np.float64); got = got if layout == "bhsd" else got.transpose(0, 2, 1, 3)
    err = np.linalg.norm(got - o) / max(np.linalg.norm(o), 1e-30)
    if variant == "linear":
        tol = 1e-4 if dt == "f32" else 2e-3; key = (variant, dt); worst[key] = max(worst.get(key, 0), err)
        if err > tol or np.isnan(got).any(): print("MISMATCH", B, Hq, Hkv, Lq, Lk, D, Dv, causal, fm, dt, layout, err)
        continue
    gl = np.load(os.path.join(tmp, "lse.npy")).astype(np.float64)
    inf_ok = np.array_equal(np.isinf(gl), np.isinf(lse))
    fin = np.isfinite(lse); lerr = np.linalg.norm(gl[fin] - lse[fin]) / max(np.linalg.norm(lse[fin]), 1e-30) if fin.any() else 0
    tol = 1e-4 if dt == "f32" else 2e-3
    key = (variant, dt); worst[key] = max(worst.get(key, 0), err)
    if err > tol or lerr > tol or not inf_ok or np.isnan(got).any():
        print("MISMATCH", B, Hq, Hkv, Lq, Lk, D, Dv, causal, win, dt, layout, variant, err, lerr, inf_ok)
print("worst", worst)
