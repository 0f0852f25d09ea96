"""Plots scripts/bench.sh's curves: throughput and p50/p99 latency against
connections, one line per route. Usage: plot.py curves.csv OUT_DIR"""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    "static": "static route (same size)",
    "l1": "cached list, L1 hit",
    "l2": "cached list, L2 hit",
    "off": "cache off",
}

rows = defaultdict(list)
with open(sys.argv[1]) as f:
    for r in csv.DictReader(f):
        rows[r["route"]].append(r)
out = sys.argv[2]

fig, ax = plt.subplots(figsize=(8, 5))
for route, rs in rows.items():
    ax.plot([int(r["connections"]) for r in rs], [float(r["rps"] or 0) for r in rs],
            marker="o", label=LABELS.get(route, route))
ax.set_xscale("log", base=2)
ax.set_xlabel("connections (wrk, loopback)")
ax.set_ylabel("requests / s")
ax.set_title("Throughput against concurrency")
ax.grid(True, alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(f"{out}/throughput.png", dpi=110)

fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=False)
for ax, col, name in ((axes[0], "p50_ms", "p50"), (axes[1], "p99_ms", "p99")):
    for route, rs in rows.items():
        ax.plot([int(r["connections"]) for r in rs], [float(r[col] or 0) for r in rs],
                marker="o", label=LABELS.get(route, route))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("connections (wrk, loopback)")
    ax.set_ylabel(f"{name} latency, ms")
    ax.set_title(f"{name} latency against concurrency")
    ax.grid(True, alpha=0.3)
    ax.legend()
fig.tight_layout()
fig.savefig(f"{out}/latency.png", dpi=110)
