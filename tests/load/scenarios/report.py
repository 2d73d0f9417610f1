#!/usr/bin/python3
"""report.py - the report of one load scenario run (tests/load/scenarios/run.py): a Markdown page, the
run as JSON, and PNG plots.

    write_report(run: dict, out_dir: str) -> dict       (run.py: `from report import write_report`)
    /usr/bin/python3 tests/load/scenarios/report.py RUN_JSON [OUT_DIR]     (redraw from a saved run)

Reads the run dict run.py collects (or a saved report.json/run.json, which is the same dict):
    scenario, title, started, host{cpus, kernel, cpu_model}
    phases   [{name, start, end}]  seconds since the load started; the attack phase is "flood" or "slowloris"
    samples  [{t, xdp{reason: cumulative packets}, cpu[{user, system, softirq, irq, idle} % per core], slow_open?}]
    loadgen  mxedge-loadgen's JSON report; used: timeline[{t, sessions_ok, sessions_failed, session_ms{p50..}}]
             (slot t = the whole second of the run in which those sessions ended), sessions{ok, failed}
    pktgen   null or mxedge-pktgen's JSON summary {sent, pps, seconds, mix, sources, streams}
    slowloris null or the slow client's summary {connections, opened, refused, closed_by_server, ...}
    summary  run.py's figures and targets; rendered as given. Only when absent is a summary computed here
             (from the timeline and the samples, without run.py's link-level accounting).

Writes into OUT_DIR (created if needed):
    report.md            title, host, phase table, summary, targets, plots
    report.json          the run dict (indent=1), with "summary" added if it was absent
    pps_by_verdict.png   XDP packets/s per reason over time (log y)
    sessions.png         legitimate sessions completed and failed per second, baseline mean
    latency.png          session latency p50/p90/p99 per second (log y)
    cpu.png              per-core busy %, stacked user/system/softirq/irq, one panel per core
    overview.png         the four above in one 2x2 picture
Every plot has x = seconds since the load started, with the phases shaded. Missing data (no samples, no
timeline, no pktgen, gaps, a single sample) gives "no data" panels, never an exception.

Standard library plus Debian's python3-matplotlib (Agg backend).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import traceback

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.transforms as mtransforms  # noqa: E402
from matplotlib.ticker import LogFormatter, LogLocator  # noqa: E402

# XDP reasons that drop a frame (mirrors run.py's EXCLUSIVE_DROPS); "allowlisted" is the one counter that
# is not exclusive (an allowlisted frame is also counted under its verdict).
DROP_REASONS = ("drop_rate_limit", "drop_new_source", "drop_blocklist", "malformed")
NON_EXCLUSIVE = ("allowlisted",)
ATTACK_PHASES = ("flood", "slowloris")

PHASE_COLORS = {"warmup": "#bdbdbd", "baseline": "#a1d99b", "flood": "#fc9272", "slowloris": "#fdae6b",
                "recovery": "#9ecae1"}
REASON_COLORS = {"drop_rate_limit": "#d62728", "drop_new_source": "#ff7f0e", "drop_blocklist": "#8c564b",
                 "malformed": "#9467bd", "pass_smtp": "#1f77b4", "pass_not_smtp": "#17becf",
                 "pass_fragment": "#bcbd22", "pass_no_worker": "#e377c2", "allowlisted": "#000000"}
STEER_COLORS = ("#2ca02c", "#98df8a", "#006d2c", "#74c476")
CPU_PARTS = (("user", "#1f77b4"), ("system", "#ff7f0e"), ("softirq", "#d62728"), ("irq", "#9467bd"))
CORE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")

PLOT_SIZE = (12, 5)  # inches at DPI -> 1200x500 px
OVERVIEW_SIZE = (16, 10)
DPI = 100

PLOTS = (
    ("overview.png", "the one picture: XDP packets/s by verdict, legitimate sessions/s, session latency and "
                     "per-core CPU, one above the other in a 2x2 grid"),
    ("pps_by_verdict.png", "packets/s per XDP verdict (counter deltas / real interval), log scale; only reasons "
                           "that were ever nonzero; \"allowlisted\" dashed (it is not exclusive)"),
    ("sessions.png", "legitimate SMTP sessions completed (ok) and failed per second of the run, with the "
                     "baseline phase's mean (and 0.9x of it when there is an attack phase)"),
    ("latency.png", "session latency p50/p90/p99 per second (ms, log scale), by the second sessions ended"),
    ("cpu.png", "per-core busy %: user, system, softirq and irq stacked, one panel per core"),
)

# Labels for the summary keys run.py writes; other keys are shown with their own name.
SUMMARY_LABELS = {
    "baseline_sessions_per_s": "Sessions/s, baseline",
    "attack_sessions_per_s": "Sessions/s, attack phase",
    "sessions_ratio": "Sessions/s, attack / baseline",
    "baseline_p99_ms": "p99 session latency, baseline",
    "attack_p99_ms": "p99 session latency, attack phase",
    "baseline_failed_sessions": "Failed sessions, baseline",
    "attack_failed_sessions": "Failed sessions, attack phase",
    "sessions_ok": "Sessions ok (whole run)",
    "sessions_failed": "Sessions failed (whole run)",
    "flood_sent": "Flood frames sent (mxedge-pktgen)",
    "flood_pps": "Flood rate (mxedge-pktgen)",
    "flood_dropped": "Frames dropped by XDP",
    "drop_ratio": "Dropped by XDP / flood frames sent",
    "flood_reaching_kernel": "Flood frames past XDP (sent - dropped)",
    "drop_blocklist_equals_sent": "drop_blocklist == flood frames sent",
    "slow_opened": "Slow connections opened",
    "slow_refused": "Slow connections refused",
    "slow_closed_by_server": "Slow connections closed by the gateway",
    "frames_at_gateway": "Frames at the gateway (rx_packets)",
    "counters_sum": "Sum of exclusive XDP counters",
    "load_frames": "Frames of the SMTP load",
    "generated_frames": "Frames generated (flood + load)",
    "counters_add_up": "Counters add up",
}
# Rendered in their own sections rather than as summary rows.
SUMMARY_SECTIONS = ("targets", "accounting_checks", "xdp_delta")


# ---------------------------------------------------------------- small helpers

def _num(v, default: float = 0.0) -> float:
    """A finite float from anything (None, strings, junk -> default)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


def _list(v) -> list:
    return v if isinstance(v, list) else []


def _dict(v) -> dict:
    return v if isinstance(v, dict) else {}


def fmt_count(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.1f}"
    return f"{int(v):,}"


def fmt_pps(v) -> str:
    """Packets per second as 950, 12.3k, 4.56M."""
    if v is None:
        return "–"
    v = _num(v)
    if v >= 1e9:
        return f"{v / 1e9:.2f}G"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    if 0 < v < 10:
        return f"{v:.1f}"
    return f"{v:.0f}"


def fmt_pps_tick(v: float) -> str:
    """Axis labels: 10, 1k, 100k, 1M, 2.5M."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


def fmt_ratio(v, threshold=None) -> str:
    """3 decimals, more when 3 would round a value below 1 up to 1.000 or onto its threshold."""
    if v is None:
        return "–"
    v = _num(v)
    for d in range(3, 7):
        r = round(v, d)
        if (v < 1 and r >= 1) or (threshold is not None and r == _num(threshold) and v != _num(threshold)):
            continue
        break
    return f"{v:.{d}f}"


def fmt_ms(v) -> str:
    if v is None:
        return "–"
    v = _num(v)
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def fmt_value(key: str, v) -> str:
    """A summary value, formatted by what its key says it is."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "**NO**"
    if isinstance(v, dict):
        return ", ".join(f"{k}={fmt_value(k, x)}" for k, x in v.items()) or "–"
    if isinstance(v, list):
        return json.dumps(v)
    if isinstance(v, str):
        return v
    if key.endswith("ratio"):
        return fmt_ratio(v)
    if key.endswith("_ms"):
        return f"{fmt_ms(v)} ms"
    if key.endswith("_per_s"):
        return f"{_num(v):,.1f}"
    if key.endswith("pps"):
        return f"{fmt_pps(v)} pps"
    if isinstance(v, int):
        return fmt_count(v)
    return f"{v:,.4g}" if abs(v) < 1e6 else fmt_count(v)


def _md_cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list], align: str | None = None) -> list[str]:
    """A Markdown table; align is one character per column, "l" or "r" (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    out = ["| " + " | ".join(_md_cell(h) for h in header) + " |",
           "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return out


# ---------------------------------------------------------------- data

def phases_of(run: dict) -> list[dict]:
    out = []
    for p in _list(run.get("phases")):
        if isinstance(p, dict) and "start" in p and "end" in p:
            out.append({"name": str(p.get("name", "?")), "start": _num(p["start"]), "end": _num(p["end"])})
    return out


def timeline_of(run: dict) -> list[dict]:
    """The loadgen timeline sorted by t. mxedge-loadgen writes every second up to the last; a second missing
    between the first and last slot is filled in as an empty slot marked "missing" (counted as no sessions
    in the phase figures, as run.py does, and drawn as a gap)."""
    slots = {}
    for s in _list(_dict(run.get("loadgen")).get("timeline")):
        if isinstance(s, dict) and "t" in s:
            slots[int(_num(s["t"]))] = s
    if not slots:
        return []
    out = []
    for t in range(min(slots), max(slots) + 1):
        s = slots.get(t, {})
        ms = _dict(s.get("session_ms"))
        out.append({"t": t, "missing": t not in slots,
                    "ok": int(_num(s.get("sessions_ok"))), "failed": int(_num(s.get("sessions_failed"))),
                    "ms": {q: _num(ms.get(q), float("nan")) for q in ("p50", "p90", "p99", "max")}})
    return out


def samples_of(run: dict) -> list[dict]:
    out = [s for s in _list(run.get("samples")) if isinstance(s, dict) and "t" in s]
    return sorted(out, key=lambda s: _num(s["t"]))


def xdp_intervals(samples: list[dict]) -> list[tuple[float, float, dict]]:
    """(t0, t1, {reason: packets in the interval}) between successive samples. A counter that went backwards
    (a restarted gateway) counts from zero."""
    out = []
    for a, b in zip(samples, samples[1:]):
        t0, t1 = _num(a["t"]), _num(b["t"])
        if t1 <= t0:
            continue
        xa, xb = _dict(a.get("xdp")), _dict(b.get("xdp"))
        deltas = {}
        for r in set(xa) | set(xb):
            va, vb = _num(xa.get(r)), _num(xb.get(r))
            deltas[r] = vb - va if vb >= va else vb
        out.append((t0, t1, deltas))
    return out


def reasons_seen(intervals) -> list[str]:
    """XDP reasons with a nonzero rate at some point, in a stable order: drops, passes, steering, rest."""
    return sorted({r for _, _, d in intervals for r, v in d.items() if v > 0}, key=reason_order)


def reason_order(r: str) -> tuple[int, str]:
    group = (0 if r in DROP_REASONS else 1 if r.startswith("pass_") else 2 if r.startswith("steered_")
             else 4 if r in NON_EXCLUSIVE else 3)
    return group, r


def reason_style(r: str, i: int) -> dict:
    if r.startswith("steered_worker_"):
        try:
            color = STEER_COLORS[int(r.rsplit("_", 1)[1]) % len(STEER_COLORS)]
        except ValueError:
            color = STEER_COLORS[0]
    else:
        color = REASON_COLORS.get(r, CORE_COLORS[i % len(CORE_COLORS)])
    return {"color": color, "linestyle": "--" if r in NON_EXCLUSIVE else "-",
            "linewidth": 1.2 if r in NON_EXCLUSIVE else 1.6}


def phase_stats(run: dict) -> list[dict]:
    """Per phase: sessions/s (ok sessions in the timeline slots with start <= t < end, over the phase's
    length), failed sessions, median of per-second p50, max of per-second p99 (slots with ok sessions only),
    and packets/s per XDP reason (the intervals whose midpoint is in the phase: packets / seconds)."""
    timeline, intervals = timeline_of(run), xdp_intervals(samples_of(run))
    out = []
    for p in phases_of(run):
        slots = [s for s in timeline if p["start"] <= s["t"] < p["end"]]
        length = p["end"] - p["start"]
        ok = sum(s["ok"] for s in slots)
        p50s = [s["ms"]["p50"] for s in slots if s["ok"] and not math.isnan(s["ms"]["p50"])]
        p99s = [s["ms"]["p99"] for s in slots if s["ok"] and not math.isnan(s["ms"]["p99"])]
        ivs = [iv for iv in intervals if p["start"] <= (iv[0] + iv[1]) / 2 < p["end"]]
        secs = sum(t1 - t0 for t0, t1, _ in ivs)
        pps = {}
        if secs > 0:
            for _, _, d in ivs:
                for r, v in d.items():
                    pps[r] = pps.get(r, 0.0) + v
            pps = {r: v / secs for r, v in pps.items()}
        out.append({**p, "slots": len(slots), "sessions_ok": ok,
                    "sessions_per_s": ok / length if length > 0 and slots else None,
                    "failed": sum(s["failed"] for s in slots) if slots else None,
                    "p50_ms": statistics.median(p50s) if p50s else None,
                    "p99_ms": max(p99s) if p99s else None,
                    "pps": pps if secs > 0 else None})
    return out


def compute_summary(run: dict, stats: list[dict]) -> dict:
    """A summary for a run that has none (run.py always writes one): the phase figures and the targets that
    can be judged from the timeline and the samples alone. XDP drops are counted between the first and the
    last sample, so frames counted before the first sample are missed."""
    by_name = {p["name"]: p for p in stats}
    s: dict = {"summary_source": "report.py (no summary in the run; no link-level accounting)"}
    sessions = _dict(_dict(run.get("loadgen")).get("sessions"))
    base = by_name.get("baseline")
    targets = []
    if base:
        s.update({"baseline_sessions_per_s": _round(base["sessions_per_s"], 2),
                  "baseline_p99_ms": _round(base["p99_ms"], 3), "baseline_failed_sessions": base["failed"]})
    if "ok" in sessions:
        s["sessions_ok"] = sessions.get("ok")
        s["sessions_failed"] = sessions.get("failed")
    attack = next((p for p in stats if p["name"] in ATTACK_PHASES), None)
    if attack:
        s.update({"attack_sessions_per_s": _round(attack["sessions_per_s"], 2),
                  "attack_p99_ms": _round(attack["p99_ms"], 3), "attack_failed_sessions": attack["failed"]})
        base_rate = base["sessions_per_s"] if base else None
        if base_rate and attack["sessions_per_s"] is not None:  # no target without data for both phases
            ratio = attack["sessions_per_s"] / base_rate
            s["sessions_ratio"] = round(ratio, 4)
            targets.append({"name": f"sessions/s during the {attack['name']} >= 0.9x baseline",
                            "value": round(ratio, 4), "threshold": 0.9, "met": ratio >= 0.9})
    pk = _dict(run.get("pktgen"))
    if pk:
        samples = samples_of(run)
        dropped = 0
        if len(samples) >= 2:
            first, last = _dict(samples[0].get("xdp")), _dict(samples[-1].get("xdp"))
            dropped = int(sum(_num(last.get(r)) - _num(first.get(r)) for r in DROP_REASONS))
        sent = int(_num(pk.get("sent")))
        ratio = dropped / sent if sent else 0.0
        s.update({"flood_sent": sent, "flood_pps": pk.get("pps"), "flood_dropped": dropped,
                  "drop_ratio": round(ratio, 6)})
        targets.append({"name": "flood frames dropped by XDP / flood frames sent >= 0.99",
                        "value": round(ratio, 6), "threshold": 0.99, "met": ratio >= 0.99})
    s["targets"] = targets
    return s


def _legend(ax, handles=None, labels=None, ncol: int = 4) -> None:
    """The legend in one band across the top, under the phase names (each plot leaves headroom for it)."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(0.0, 0.955), ncol=ncol,
                  framealpha=0.85)


def _log_headroom(ax, values: list[float], share: float) -> None:
    """On a log axis, leave the top `share` of the height free for the legend."""
    pos = [v for v in values if v > 0 and not math.isnan(v)]
    if pos:
        lo, hi = min(pos) / 1.5, max(pos) * 1.5
        ax.set_ylim(lo, hi * (hi / lo) ** (share / (1 - share)))


def _round(v, digits: int):
    return None if v is None else round(v, digits)


# ---------------------------------------------------------------- plots

def _x_range(run: dict) -> tuple[float, float]:
    ends = [p["end"] for p in phases_of(run)]
    ends += [_num(s["t"]) for s in samples_of(run)]
    ends += [s["t"] + 1 for s in timeline_of(run)]
    return 0.0, max(ends + [1.0])


def shade_phases(ax, run: dict) -> None:
    """Shade each phase and name it at the top of the axes."""
    trans = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    for p in phases_of(run):
        if p["end"] <= p["start"]:
            continue
        ax.axvspan(p["start"], p["end"], color=PHASE_COLORS.get(p["name"], "#dddddd"), alpha=0.25, lw=0, zorder=0)
        ax.text((p["start"] + p["end"]) / 2, 0.985, p["name"], transform=trans, ha="center", va="top",
                fontsize=8, color="#444444", zorder=5)
    ax.set_xlim(*_x_range(run))
    ax.set_xlabel("seconds since the load started")
    ax.grid(True, which="major", alpha=0.3)


def no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no data\n({what})", transform=ax.transAxes, ha="center", va="center",
            fontsize=12, color="#888888")


class _LogLabels(LogFormatter):
    """Log-axis tick labels as plain numbers through fmt (matplotlib's default is 4x10^1); matplotlib still
    decides which ticks get a label."""

    def __init__(self, fmt, minor_thresholds=None):
        super().__init__(labelOnlyBase=False, minor_thresholds=minor_thresholds)
        self._fmt = fmt

    def _num_to_string(self, x, vmin, vmax):
        return self._fmt(x)


def _log_y(ax, fmt, minor_thresholds=None) -> None:
    """Log y axis, a tick at every decade, labels through fmt (minor ones too when few decades show)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=30))
    ax.yaxis.set_major_formatter(_LogLabels(fmt))
    ax.yaxis.set_minor_formatter(_LogLabels(fmt, minor_thresholds))


def draw_pps(ax, run: dict) -> None:
    intervals = xdp_intervals(samples_of(run))
    reasons = reasons_seen(intervals)
    title = "XDP packets/s by verdict"
    pk = _dict(run.get("pktgen"))
    if pk:
        title += (f"  (pktgen: {fmt_count(_num(pk.get('sent')))} sent at {fmt_pps(pk.get('pps'))} pps, "
                  f"mix {pk.get('mix', '?')}, sources {pk.get('sources', '?')})")
    ax.set_title(title, fontsize=10)
    shade_phases(ax, run)
    if not reasons:
        no_data(ax, "fewer than two XDP samples" if len(intervals) == 0 else "every XDP counter stayed at 0")
        return
    xs = [(t0 + t1) / 2 for t0, t1, _ in intervals]
    every = []
    for i, r in enumerate(reasons):
        ys = [d.get(r, 0) / (t1 - t0) for t0, t1, d in intervals]
        ys = [y if y > 0 else float("nan") for y in ys]  # log axis: zeros are gaps
        ax.plot(xs, ys, label=r, marker="." if len(xs) < 3 else None, **reason_style(r, i))
        every += ys
    _log_y(ax, fmt_pps_tick)
    _log_headroom(ax, every, 0.22 if len(reasons) <= 5 else 0.3)
    ax.set_ylabel("packets/s")
    _legend(ax, ncol=5)


def _baseline_rate(run: dict) -> tuple[float | None, bool]:
    stats = phase_stats(run)
    base = next((p["sessions_per_s"] for p in stats if p["name"] == "baseline"), None)
    return base, any(p["name"] in ATTACK_PHASES for p in stats)


def draw_sessions(ax, run: dict) -> None:
    ax.set_title("Legitimate SMTP sessions per second", fontsize=10)
    shade_phases(ax, run)
    timeline = timeline_of(run)
    slow = [(_num(s["t"]), _num(s["slow_open"])) for s in samples_of(run) if s.get("slow_open") is not None]
    room = 1.45 if slow else 1.3  # headroom for the legend (two rows with the slowloris line)
    if not timeline:
        no_data(ax, "no loadgen timeline")
    else:
        xs = [s["t"] + 0.5 for s in timeline]  # slot t holds the sessions that ended in [t, t+1)
        nan = float("nan")
        ax.plot(xs, [nan if s["missing"] else s["ok"] for s in timeline], color="#2ca02c", lw=1.6,
                label="completed (ok)", marker="." if len(xs) < 3 else None)
        ax.plot(xs, [nan if s["missing"] else s["failed"] for s in timeline], color="#d62728", lw=1.4,
                label="failed", marker="." if len(xs) < 3 else None)
        base, attack = _baseline_rate(run)
        if base:
            ax.axhline(base, color="#2ca02c", ls="--", lw=1, alpha=0.8, label=f"baseline mean {base:.1f}/s")
            if attack:
                ax.axhline(0.9 * base, color="#555555", ls=":", lw=1, label="0.9x baseline (target)")
        ax.set_ylim(bottom=0, top=max([s["ok"] for s in timeline] + [s["failed"] for s in timeline] +
                                      [base or 0, 1]) * room)
        ax.set_ylabel("sessions/s")
    handles, labels = ax.get_legend_handles_labels()
    if slow:
        ax2 = ax.twinx()
        ax2.plot([t for t, _ in slow], [n for _, n in slow], color="#ff7f0e", lw=1.2, ls="-.",
                 label="slowloris connections open")
        ax2.set_ylabel("slow connections open", color="#ff7f0e")
        ax2.set_ylim(bottom=0, top=max([n for _, n in slow] + [1]) * room)
        h2, l2 = ax2.get_legend_handles_labels()
        _legend(ax2, handles + h2, labels + l2, ncol=3)  # on the twin axes, which are drawn on top
    else:
        _legend(ax, handles, labels, ncol=4)


def draw_latency(ax, run: dict) -> None:
    ax.set_title("SMTP session latency (by the second sessions ended)", fontsize=10)
    shade_phases(ax, run)
    timeline = [s for s in timeline_of(run) if s["ok"] > 0]
    if not timeline:
        no_data(ax, "no completed sessions in the loadgen timeline")
        return
    xs = [s["t"] + 0.5 for s in timeline_of(run)]
    every = []
    for q, color in (("p50", "#1f77b4"), ("p90", "#ff7f0e"), ("p99", "#d62728")):
        ys = [s["ms"][q] if s["ok"] > 0 and s["ms"][q] > 0 else float("nan") for s in timeline_of(run)]
        if any(not math.isnan(y) for y in ys):
            ax.plot(xs, ys, color=color, lw=1.5, label=q, marker="." if len(xs) < 3 else None)
            every += ys
    if not every:
        no_data(ax, "every latency was 0")
        return
    _log_y(ax, lambda v: f"{v:g}", minor_thresholds=(2, 0.5))
    _log_headroom(ax, every, 0.15)
    ax.set_ylabel("ms")
    _legend(ax)


def cpu_series(run: dict) -> tuple[list[float], list[list[dict | None]]]:
    """x = sample times, and per core a list (one entry per sample) of its percentages or None."""
    samples = samples_of(run)
    ncores = max([len(_list(s.get("cpu"))) for s in samples] + [0])
    xs = [_num(s["t"]) for s in samples]
    cores = []
    for c in range(ncores):
        col = []
        for s in samples:
            cpu = _list(s.get("cpu"))
            col.append(cpu[c] if c < len(cpu) and isinstance(cpu[c], dict) else None)
        cores.append(col)
    return xs, cores


def _busy(p: dict | None) -> float:
    if p is None:
        return float("nan")
    return sum(_num(p.get(k)) for k, _ in CPU_PARTS)


def _cpu_axis(ax) -> None:
    ax.set_ylim(0, 125)  # 100 % plus room for the legend
    ax.set_yticks(range(0, 101, 20))


def draw_cpu_lines(ax, run: dict) -> None:
    """One line per core: busy % (solid) and its softirq part (dashed); for the overview."""
    ax.set_title("CPU busy % per core (solid: user+system+softirq+irq, dashed: softirq)", fontsize=10)
    shade_phases(ax, run)
    xs, cores = cpu_series(run)
    if not cores or all(p is None for col in cores for p in col):
        no_data(ax, "no CPU samples")
        return
    for c, col in enumerate(cores):
        color = CORE_COLORS[c % len(CORE_COLORS)]
        mk = "." if len(xs) < 3 else None
        ax.plot(xs, [_busy(p) for p in col], color=color, lw=1.6, label=f"cpu{c} busy", marker=mk)
        ax.plot(xs, [_num(p.get("softirq")) if p else float("nan") for p in col], color=color, lw=1.0, ls="--",
                label=f"cpu{c} softirq", marker=mk)
    _cpu_axis(ax)
    ax.set_ylabel("% of the core")
    _legend(ax, ncol=4)


def draw_cpu_stacked(fig, run: dict) -> None:
    """cpu.png: one panel per core, user/system/softirq/irq stacked."""
    xs, cores = cpu_series(run)
    if not cores or all(p is None for col in cores for p in col):
        ax = fig.add_subplot(1, 1, 1)
        ax.set_title("CPU busy % per core", fontsize=10)
        shade_phases(ax, run)
        no_data(ax, "no CPU samples")
        return
    axes = fig.subplots(1, len(cores), sharey=True, squeeze=False)[0]
    for c, (ax, col) in enumerate(zip(axes, cores)):
        ax.set_title(f"cpu{c} busy %", fontsize=10)
        shade_phases(ax, run)
        ys = [[_num(p.get(k)) if p else float("nan") for p in col] for k, _ in CPU_PARTS]
        if len(xs) == 1:  # a stack needs two points: draw bars instead
            bottom = 0.0
            for (k, color), y in zip(CPU_PARTS, ys):
                ax.bar(xs, y, bottom=bottom, width=0.8, color=color, label=k)
                bottom += y[0] if not math.isnan(y[0]) else 0.0
        else:
            ax.stackplot(xs, *ys, labels=[k for k, _ in CPU_PARTS], colors=[c_ for _, c_ in CPU_PARTS],
                         alpha=0.85)
        _cpu_axis(ax)
        if c == 0:
            ax.set_ylabel("% of the core")
            _legend(ax)


def _guarded(draw, ax, run: dict, what: str) -> None:
    """Draw a panel; a bug in one panel marks that panel instead of losing the whole report."""
    try:
        draw(ax, run)
    except Exception:  # noqa: BLE001 - the report must still be written
        print(f"report.py: {what}: {traceback.format_exc()}", file=sys.stderr)
        ax.clear()
        ax.text(0.5, 0.5, f"{what}: plot failed (see stderr)", transform=ax.transAxes, ha="center", va="center",
                color="#aa0000")


def write_plots(run: dict, out_dir: str) -> list[str]:
    panels = (("pps_by_verdict.png", draw_pps), ("sessions.png", draw_sessions), ("latency.png", draw_latency))
    paths = []
    for name, draw in panels:
        fig, ax = plt.subplots(figsize=PLOT_SIZE, dpi=DPI)
        _guarded(draw, ax, run, name)
        fig.tight_layout()
        paths.append(_save(fig, out_dir, name))

    fig = plt.figure(figsize=PLOT_SIZE, dpi=DPI)
    try:
        draw_cpu_stacked(fig, run)
    except Exception:  # noqa: BLE001 - the report must still be written
        print(f"report.py: cpu.png: {traceback.format_exc()}", file=sys.stderr)
        fig.clf()
        fig.text(0.5, 0.5, "cpu.png: plot failed (see stderr)", ha="center", va="center", color="#aa0000")
    fig.tight_layout()
    paths.append(_save(fig, out_dir, "cpu.png"))

    fig, axes = plt.subplots(2, 2, figsize=OVERVIEW_SIZE, dpi=DPI)
    for ax, (draw, what) in zip(axes.flat, ((draw_pps, "pps"), (draw_sessions, "sessions"),
                                            (draw_latency, "latency"), (draw_cpu_lines, "cpu"))):
        _guarded(draw, ax, run, what)
    heading = ": ".join(str(x) for x in (run.get("scenario"), run.get("title")) if x) or "load run"
    if run.get("started"):
        heading += f"   ({run['started']})"
    fig.suptitle(heading, fontsize=13)
    fig.tight_layout()
    paths.insert(0, _save(fig, out_dir, "overview.png"))
    return paths


def _save(fig, out_dir: str, name: str) -> str:
    path = os.path.join(out_dir, name)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- markdown

def render_markdown(run: dict, summary: dict, stats: list[dict], plot_names: list[str]) -> str:
    host = _dict(run.get("host"))
    lines = [f"# {run.get('title') or run.get('scenario', 'load run')}", "",
             f"- scenario: `{run.get('scenario', '?')}`",
             f"- started: {run.get('started', '?')}",
             f"- host: {host.get('cpus', '?')} CPUs, {host.get('cpu_model', '?')}, kernel {host.get('kernel', '?')}"]
    pk = _dict(run.get("pktgen"))
    if pk:
        streams = "; ".join(f"{_dict(s).get('kind', '?')}/IPv{_dict(s).get('family', '?')} "
                            f"{fmt_count(_num(_dict(s).get('sent')))} x {_dict(s).get('frame_bytes', '?')} B"
                            for s in _list(pk.get("streams")))
        lines.append(f"- flood (mxedge-pktgen): {fmt_count(_num(pk.get('sent')))} frames in "
                     f"{_num(pk.get('seconds')):.1f} s = {fmt_pps(pk.get('pps'))} pps, mix `{pk.get('mix', '?')}`, "
                     f"sources `{pk.get('sources', '?')}`" + (f" ({streams})" if streams else ""))
    sl = _dict(run.get("slowloris"))
    if sl:
        lines.append("- slowloris: " + ", ".join(f"{k.replace('_', ' ')} {fmt_value(k, v)}" for k, v in sl.items()))
    if "overview.png" in plot_names:
        lines += ["", "![overview: XDP verdicts, sessions/s, latency, CPU](overview.png)"]

    # Phases
    reasons = sorted({r for p in stats if p["pps"] for r, v in p["pps"].items() if v > 0}, key=reason_order)
    lines += ["", "## Phases", ""]
    if stats:
        header = ["phase", "start s", "end s", "sessions/s", "failed", "p50 ms [1]", "p99 ms [1]"]
        header += [f"{r}{' [2]' if r in NON_EXCLUSIVE else ''} pps" for r in reasons]
        rows = []
        for p in stats:
            row = [p["name"], f"{p['start']:.1f}", f"{p['end']:.1f}",
                   "–" if p["sessions_per_s"] is None else f"{p['sessions_per_s']:.1f}",
                   fmt_count(p["failed"]), fmt_ms(p["p50_ms"]), fmt_ms(p["p99_ms"])]
            row += ["–" if p["pps"] is None else fmt_pps(p["pps"].get(r, 0)) for r in reasons]
            rows.append(row)
        lines += _md_table(header, rows)
        lines += ["", "[1] Per phase, from the load generator's per-second timeline (the slots with "
                  "start <= t < end; sessions counted in the second they ended): p50 is the median of the "
                  "per-second p50s, p99 the maximum of the per-second p99s (seconds with completed sessions only).",
                  "Packets/s per XDP verdict: counter deltas between successive samples over the real time "
                  "between them, for the intervals whose midpoint lies in the phase; \"–\": no samples."]
        if any(r in NON_EXCLUSIVE for r in reasons):
            lines.append("[2] Not exclusive: allowlisted frames are also counted under their verdict.")
    else:
        lines.append("No phases recorded.")

    # Summary
    lines += ["", "## Summary", ""]
    rows = [[SUMMARY_LABELS.get(k, k.replace("_", " ")), fmt_value(k, v)]
            for k, v in summary.items() if k not in SUMMARY_SECTIONS]
    lines += _md_table(["", "value"], rows) if rows else ["(empty)"]
    checks = _dict(summary.get("accounting_checks"))
    if checks:
        lines += ["", "Accounting checks (after the run went quiet):", ""]
        lines += [f"- {'ok' if ok else '**BAD**'}: `{name}`" for name, ok in checks.items()]
    delta = _dict(summary.get("xdp_delta"))
    if delta:
        lines += ["", "XDP counters over the run (nonzero):", ""]
        lines += _md_table(["reason", "packets"], [[r, fmt_count(v) if isinstance(v, (int, float)) else v]
                                                    for r, v in delta.items()])

    # Targets
    lines += ["", "## Targets", ""]
    targets = [t for t in _list(summary.get("targets")) if isinstance(t, dict)]
    if targets:
        rows = []
        for t in targets:
            v, th = t.get("value"), t.get("threshold")
            if isinstance(v, float) or isinstance(th, float):
                vs, ths = fmt_ratio(v, th), fmt_ratio(th)
            else:
                vs, ths = fmt_value("", v), fmt_value("", th)
            rows.append([t.get("name", "?"), vs, ths, "met" if t.get("met") else "**NOT met**"])
        lines += _md_table(["target", "value", "threshold", "result"], rows, "lrrl")
        met = sum(1 for t in targets if t.get("met"))
        lines += ["", f"{met} of {len(targets)} targets met."]
    else:
        lines.append("No targets.")

    # Plots
    lines += ["", "## Plots", "", "x axis: seconds since the load started; the phases are shaded.", ""]
    described = dict(PLOTS)
    lines += [f"- [{n}]({n}): {described.get(n, '')}" for n in plot_names]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- entry points

def write_report(run: dict, out_dir: str) -> dict:
    """Write report.md, report.json and the PNG plots of one run into out_dir.

    Returns {"markdown": path, "json": path, "plots": [paths]}. The run's "summary" is rendered as given;
    only when it is absent is one computed (and added to report.json, not to the caller's dict)."""
    os.makedirs(out_dir, exist_ok=True)
    doc = dict(run)
    stats = phase_stats(doc)
    if not isinstance(doc.get("summary"), dict):
        doc["summary"] = compute_summary(doc, stats)
    json_path = os.path.join(out_dir, "report.json")
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1, default=str)
        f.write("\n")
    plots = write_plots(doc, out_dir)
    md_path = os.path.join(out_dir, "report.md")
    with open(md_path, "w") as f:
        f.write(render_markdown(doc, doc["summary"], stats, [os.path.basename(p) for p in plots]))
    return {"markdown": md_path, "json": json_path, "plots": plots}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or len(argv) > 2:
        print("usage: report.py RUN_JSON [OUT_DIR]   (redraw a run's report; OUT_DIR defaults to RUN_JSON's "
              "directory)", file=sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    try:
        with open(argv[0]) as f:
            run = json.load(f)
    except (OSError, ValueError) as e:
        print(f"report.py: {argv[0]}: {e}", file=sys.stderr)
        return 1
    if not isinstance(run, dict):
        print(f"report.py: {argv[0]}: not a JSON object", file=sys.stderr)
        return 1
    out_dir = argv[1] if len(argv) > 1 else (os.path.dirname(os.path.abspath(argv[0])))
    paths = write_report(run, out_dir)
    print(paths["markdown"])
    print(paths["json"])
    for p in paths["plots"]:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
