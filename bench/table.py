#!/usr/bin/env python3
"""Turns bench/run.sh's results.jsonl into the side-by-side table (Markdown).

Each line of results.jsonl is {"client", "run", "result": <one JSON line of a
client>} (or a "failed" record). Runs of the same client and scenario (the
latency scenarios run three times) are reduced to the median of each field.
Columns: every client, then rgrpc as a ratio to the C++ client, to the best
peer (C++, tonic, tonic current-thread) and, for the latency scenarios, to
the TCP floor. A ratio is marked ok when rgrpc is at least as good.
"""
import json
import statistics
import sys
from collections import defaultdict

CLIENTS = [
    ("tcp", "TCP floor"),
    ("cpp", "C++ (C-core)"),
    ("tonic", "tonic MT"),
    ("tonic_ct", "tonic CT"),
    ("rgrpc", "rgrpc"),
    ("rgrpc_pool", "rgrpc pool cb"),
    ("rgrpc_thr", "rgrpc threads"),
    ("rgrpc_pull", "rgrpc recv loop"),
]
PEERS = ["cpp", "tonic", "tonic_ct"]


def cpu_us(r):
    return (r["cpu_user_s"] + r["cpu_sys_s"]) / r["calls"] * 1e6 if r["calls"] else None


def field(name):
    return lambda r: r.get(name)


# scenario -> [(label, getter, higher_is_better, format)]
METRICS = {
    "unary_lat": [
        ("p50 µs", field("p50_us"), False, "{:.1f}"),
        ("p99 µs", field("p99_us"), False, "{:.1f}"),
        ("CPU µs/call", cpu_us, False, "{:.1f}"),
        ("peak RSS KB", field("max_rss_kb"), False, "{:.0f}"),
    ],
    "pingpong_lat": [
        ("p50 µs", field("p50_us"), False, "{:.1f}"),
        ("p99 µs", field("p99_us"), False, "{:.1f}"),
        ("CPU µs/msg", cpu_us, False, "{:.1f}"),
    ],
    "unary_tput": [
        ("calls/s", field("qps"), True, "{:,.0f}"),
        ("CPU µs/call", cpu_us, False, "{:.1f}"),
        ("p50 µs", field("p50_us"), False, "{:.0f}"),
        ("peak RSS KB", field("max_rss_kb"), False, "{:.0f}"),
    ],
    "server_stream": [
        ("msgs/s", field("msgs_per_s"), True, "{:,.0f}"),
        ("CPU µs/msg", cpu_us, False, "{:.2f}"),
    ],
    "client_stream": [
        ("msgs/s", field("msgs_per_s"), True, "{:,.0f}"),
        ("CPU µs/msg", cpu_us, False, "{:.2f}"),
    ],
    "large_unary": [
        ("MB/s", field("MB_per_s"), True, "{:,.0f}"),
        ("CPU µs/call", cpu_us, False, "{:,.0f}"),
        ("p50 µs", field("p50_us"), False, "{:,.0f}"),
        ("peak RSS KB", field("max_rss_kb"), False, "{:.0f}"),
    ],
}


def median_value(runs, get):
    vals = [get(r) for r in runs]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio(mine, other, higher_better):
    if mine is None or other in (None, 0):
        return ""
    q = mine / other
    ok = q >= 1 if higher_better else q <= 1
    return f"{q:.2f}" + (" ok" if ok else " **miss**")


def main(path):
    runs = defaultdict(list)
    failed = {}
    labels = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            label = rec.get("label") or rec.get("scenario") or rec["result"]["scenario"]
            if label not in labels:
                labels.append(label)
            if "failed" in rec:
                failed[(rec["client"], label)] = rec.get("error", f"exit {rec['failed']}")
                continue
            runs[(rec["client"], label)].append(rec["result"])
    seen = {k[0] for k in runs} | {k[0] for k in failed}
    present = [(c, n) for c, n in CLIENTS if c in seen]
    head = ["scenario", "metric"] + [n for _, n in present] + ["rgrpc / C++", "rgrpc / best peer", "rgrpc / TCP"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label in labels:
        base = label.split("@")[0]
        for mlabel, get, hib, fmt in METRICS.get(base, []):
            vals = {}
            cells = []
            for c, _ in present:
                if (c, label) in failed and not runs.get((c, label)):
                    cells.append("failed")
                    continue
                v = median_value(runs.get((c, label), []), get)
                vals[c] = v
                cells.append(fmt.format(v) if v is not None else "—")
            mine = vals.get("rgrpc")
            peers = [vals[p] for p in PEERS if vals.get(p) is not None]
            best = (max(peers) if hib else min(peers)) if peers else None
            lat = base in ("unary_lat", "pingpong_lat") and not mlabel.startswith("peak")
            row = [label, mlabel] + cells + [
                ratio(mine, vals.get("cpp"), hib),
                ratio(mine, best, hib),
                ratio(mine, vals.get("tcp"), hib) if lat else "",
            ]
            print("| " + " | ".join(row) + " |")
    n = {k: len(v) for k, v in runs.items()}
    multi = [l for l in labels if any(k[1] == l and v > 1 for k, v in n.items())]
    if multi:
        print(f"\nMedians of {max(n.values())} runs for: {', '.join(multi)}.")
    for (c, label), err in sorted(failed.items()):
        print(f"\n{c} {label} failed: {err}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results.jsonl")
