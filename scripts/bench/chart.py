#!/usr/bin/env python3
"""chart.py: draw scripts/bench.sh's summary as a PNG (bars per system).

Usage: chart.py RESULTS_JSON OUT_PNG

Four panels, one bar group per path of the summary (kernel, Causeway plain, Causeway's tunnel
twice: with VpnGw5's rates and unshaped (`shaping = false`), the comparison peers): TCP Gbit/s
with one stream in both directions, for every path and for the tunnels alone (both Causeway
tunnel rows, with VpnGw5's per-tunnel cap over the VpnGw5 row, and a dashed line at five times the
best comparison peer: the target for the unshaped row, which the peers are compared with), UDP
64-byte Mpps received, and ping RTT p50 / p99 in ms. A path whose figure is missing gets no bar and
"n/a" in its place. Needs matplotlib (scripts/bench/install-peers.sh puts it into
target/bench/venv).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

PEERS = ("wireguard-go", "boringtun", "strongswan-libipsec")
# The two Causeway tunnel rows, as scripts/bench.sh names them (results.json's tunnel_paths, when
# present, wins): the one the peers are compared with (shaping = false) and the SKU-capped one.
TUNNEL = "causeway tunnel aes256gcm16 (unshaped)"
TUNNEL_CAPPED = "causeway tunnel aes256gcm16 (VpnGw5)"


def colour(path, capped):
    if path == "kernel":
        return "#7f7f7f"
    if path == capped:
        return "#98df8a"
    if path.startswith("causeway"):
        return "#1f77b4" if path == "causeway plain" else "#2ca02c"
    return "#d62728"


def legend(ax, first, second, loc, extra=()):
    """A legend of the two bars of a group, in neutral colours (the bars' colours are the paths'),
    and of the lines drawn over them (EXTRA: handles)."""
    ax.legend(handles=[Patch(facecolor="#999999", label=first),
                       Patch(facecolor="#cccccc", hatch="//", label=second)] + list(extra),
              fontsize=8, loc=loc)


def label_bars(ax, bars, values, fmt, floors=None):
    """Each bar's value over it (FLOORS: per bar, a line the label must stay above, or None)."""
    for k, (bar, v) in enumerate(zip(bars, values)):
        if v is None:
            ax.annotate("n/a", (bar.get_x() + bar.get_width() / 2, 0), ha="center", va="bottom",
                        fontsize=7, xytext=(0, 2), textcoords="offset points")
        else:
            y = max(bar.get_height(), (floors[k] if floors else None) or 0)
            ax.annotate(fmt.format(v), (bar.get_x() + bar.get_width() / 2, y),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 3),
                        textcoords="offset points")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: chart.py RESULTS_JSON OUT_PNG")
    with open(sys.argv[1], encoding="utf-8") as f:
        res = json.load(f)
    rows = res.get("summary") or []
    if not rows:
        sys.exit("chart.py: no summary rows in " + sys.argv[1])
    paths = res.get("tunnel_paths") or {}
    tunnel = paths.get("compared") or TUNNEL
    capped = paths.get("capped") or TUNNEL_CAPPED
    names = [r["path"] for r in rows]
    short = [n.replace("causeway tunnel ", "causeway tunnel\n").replace(" (", "\n(")
             .replace("strongswan-", "strongswan\n") for n in names]
    x = list(range(len(rows)))
    cols = [colour(n, capped) for n in names]

    fig, grid = plt.subplots(2, 2, figsize=(15, 10))
    axes = [grid[0][0], grid[0][1], grid[1][0], grid[1][1]]
    w = 0.38

    def gbps_panel(ax, idx, title, loc):
        fwd = [rows[i].get("gbps") for i in idx]
        rev = [rows[i].get("gbps_reverse") for i in idx]
        c = [cols[i] for i in idx]
        xs = list(range(len(idx)))
        b1 = ax.bar([i - w / 2 for i in xs], [v or 0 for v in fwd], w, color=c, label="VNet -> on-prem")
        b2 = ax.bar([i + w / 2 for i in xs], [v or 0 for v in rev], w, color=c, alpha=0.55, hatch="//",
                    label="on-prem -> VNet")
        caps = [rows[i].get("sku_cap_gbps") for i in idx]
        label_bars(ax, b1, fwd, "{:.2f}", caps)
        label_bars(ax, b2, rev, "{:.2f}", caps)
        extra = []
        for j, i in enumerate(idx):
            cap = rows[i].get("sku_cap_gbps")
            if cap:
                line, = ax.plot([j - 0.45, j + 0.45], [cap, cap], color="#006400", linestyle=":",
                                linewidth=2)
                if not extra:
                    line.set_label("VpnGw5 cap: {:g} Gbit/s per tunnel".format(cap))
                    extra.append(line)
        if peer_best > 0:
            line = ax.axhline(5 * peer_best, color="black", linestyle="--", linewidth=1,
                              label="5 x best peer ({:.2f} Gbit/s): target of the unshaped tunnel".format(
                                  5 * peer_best))
            extra.append(line)
        ax.set_title(title)
        ax.set_ylabel("Gbit/s")
        legend(ax, "VNet -> on-prem", "on-prem -> VNet", loc, extra)
        ax.set_xticks(xs)
        ax.set_xticklabels([short[i] for i in idx], fontsize=8, rotation=30, ha="right")

    peer_best = max([r["gbps"] for r in rows if r["path"] in PEERS and r.get("gbps")] or [0])
    gbps_panel(axes[0], list(range(len(rows))), "TCP, 1 stream, every path (Gbit/s received)", "upper right")
    tun_idx = [i for i, n in enumerate(names) if n in (capped, tunnel) or n in PEERS]
    gbps_panel(axes[1], tun_idx, "TCP, 1 stream, the tunnels only (Gbit/s received)", "upper right")

    # Mpps
    ax = axes[2]
    mpps = [r.get("mpps") for r in rows]
    b = ax.bar(x, [v or 0 for v in mpps], 0.6, color=cols)
    label_bars(ax, b, mpps, "{:.3f}")
    ax.set_title("UDP 64 B, full rate (Mpps received)")
    ax.set_ylabel("Mpps")

    # ping
    ax = axes[3]
    p50 = [r.get("ping_p50_ms") for r in rows]
    p99 = [r.get("ping_p99_ms") for r in rows]
    b1 = ax.bar([i - w / 2 for i in x], [v or 0 for v in p50], w, color=cols, label="p50")
    b2 = ax.bar([i + w / 2 for i in x], [v or 0 for v in p99], w, color=cols, alpha=0.55, hatch="//",
                label="p99")
    label_bars(ax, b1, p50, "{:.3f}")
    label_bars(ax, b2, p99, "{:.3f}")
    ax.set_title("ping RTT through the idle path (ms)")
    ax.set_ylabel("ms")
    legend(ax, "p50", "p99", "upper left")

    for ax in axes[2:]:
        ax.set_xticks(x)
        ax.set_xticklabels(short, fontsize=8, rotation=30, ha="right")
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.margins(y=0.15)

    m = res.get("machine", {})
    title = "Causeway end to end, {} ({} CPU(s), {}, Linux {}; {} s per test; load average {} -> {})".format(
        res.get("date", "?"), m.get("nproc", "?"), m.get("cpu", "?"), m.get("kernel", "?"),
        res.get("seconds", "?"), m.get("load_average_start", "?"), m.get("load_average_end", "?"))
    fig.suptitle(title, fontsize=9)
    t = res.get("target_5x") or {}
    if t.get("ratios"):
        note = "Causeway tunnel, unshaped / peer (Gbit/s, VNet -> on-prem): " + ", ".join(
            "{} {}".format(k, "n/a" if v is None else "{:.2f}x".format(v)) for k, v in t["ratios"].items())
        note += " - 5x target " + ("met" if t.get("met") else "not met")
        fig.text(0.5, 0.01, note, ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
