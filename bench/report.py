"""What a run found: medians over the repeats, the targets, the table, the JSON and the bar chart."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .systems import BASELINE, BY_NAME

# Main table: key, heading, format.
COLUMNS = (
    ("p1_median_ms", "P1 median ms", "{:.2f}"),
    ("p1_p95_ms", "P1 p95 ms", "{:.2f}"),
    ("p2_calls_per_s", "P2 calls/s", "{:.0f}"),
    ("p3_1proc_s", "P3 1 proc s", "{:.2f}"),
    ("p3_nproc_s", "P3 N proc s", "{:.2f}"),
    ("p3_speedup", "P3 speedup", "{:.2f}"),
)
MAIN_KEYS = tuple(key for key, _, _ in COLUMNS)
# ElasticCode only: key, what, unit, format.
EC_ONLY = (
    ("p4_plug_hop_ms", "P4 plug hop: source finished -> target started, median", "ms", "{:.2f}"),
    ("p4_plug_hop_p95_ms", "P4 plug hop, p95", "ms", "{:.2f}"),
    ("p4_join_hop_ms", "P4 argument join: later source finished -> join started, median", "ms", "{:.2f}"),
    ("p4_parallel_ms", "parallel([left.p, right.p]) round trip, median", "ms", "{:.2f}"),
    ("p4_pipeline_ms", "pipeline([echo.p, echo.p]) round trip, median", "ms", "{:.2f}"),
    ("p5_history_s", "P5 history() of the synthetic calls", "s", "{:.3f}"),
    ("p7_calls_per_s", "P7 provenance ingest, stream -> PostgreSQL", "calls/s", "{:.0f}"),
    ("p7_events_per_s", "P7 provenance ingest", "events/s", "{:.0f}"),
    ("p7_push_events_per_s", "P7 push into the Redis stream alone", "events/s", "{:.0f}"),
    ("p7_sustained_calls_per_s", "P7 sustained load: 80% of the ingest rate", "calls/s", "{:.0f}"),
    ("p7_lag_median_s", "P7 lag under that load (not yet written / rate), median", "s", "{:.3f}"),
    ("p7_lag_max_s", "P7 lag under that load, max", "s", "{:.3f}"),
)
EC_KEYS = tuple(key for key, *_ in EC_ONLY)


def _median(values: list) -> float | None:
    values = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return statistics.median(values) if values else None


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def summarize(system: dict) -> dict:
    """Per-repeat figures of one system -> its metrics (medians over the repeats)."""
    reps = system["repeats"]
    per = []
    for rep in reps:
        row = {}
        if rep.get("p1"):
            row["p1_median_ms"] = statistics.median(rep["p1"]) * 1000
            row["p1_p95_ms"] = _p95(rep["p1"]) * 1000
        if rep.get("p2"):
            row["p2_calls_per_s"] = rep["p2"]["n"] / rep["p2"]["seconds"]
        if rep.get("p3_1") and rep.get("p3_n"):
            row["p3_1proc_s"], row["p3_nproc_s"] = rep["p3_1"], rep["p3_n"]
            row["p3_speedup"] = rep["p3_1"] / rep["p3_n"]
        extra = rep.get("extra") or {}
        if "plug_hop" in extra:
            row["p4_plug_hop_ms"] = extra["plug_hop"]["median"]
            row["p4_plug_hop_p95_ms"] = extra["plug_hop"]["p95"]
        if "join_hop" in extra:
            row["p4_join_hop_ms"] = extra["join_hop"]["join"]["median"]
            row["p4_parallel_ms"] = extra["join_hop"]["parallel"]["median"]
            row["p4_pipeline_ms"] = extra["join_hop"]["pipeline"]["median"]
        if "history_load" in extra:
            row["p5_history_s"] = extra["history_load"]["seconds"]
        if "ingest" in extra:
            row["p7_calls_per_s"] = extra["ingest"]["calls_per_s"]
            row["p7_events_per_s"] = extra["ingest"]["events_per_s"]
            row["p7_push_events_per_s"] = extra["ingest"]["push_events_per_s"]
            for key in ("sustained_calls_per_s", "lag_median_s", "lag_max_s"):
                if key in extra["ingest"]:
                    row[f"p7_{key}"] = extra["ingest"][key]
        per.append(row)
    keys = {key for row in per for key in row}
    return {key: _median([row.get(key) for row in per]) for key in sorted(keys)}


def targets(results: dict) -> list[dict]:
    """The issue's targets for ElasticCode, each met, missed or unknown (None)."""
    systems, n = results["systems"], results["settings"]["workers"]
    ec = systems.get("elasticcode", {}).get("metrics", {})
    base = systems.get(BASELINE, {}).get("metrics", {})

    def ratio(a, b):
        return a / b if a is not None and b else None

    rows = [
        ("P1", "round trip, ElasticCode / raw durable Celery (median)", ratio(ec.get("p1_median_ms"), base.get("p1_median_ms")),
         "<=", 1.10, "x"),
        ("P2", "throughput, ElasticCode / raw durable Celery", ratio(ec.get("p2_calls_per_s"), base.get("p2_calls_per_s")),
         ">=", 0.90, "x"),
        ("P3", f"CPU-bound speedup at N = {n}", ec.get("p3_speedup"), ">=", 0.9 * n, ""),
        ("P4", "plug hop (median)", ec.get("p4_plug_hop_ms"), "<=", 2.0, " ms"),
        ("P5", f"history() of {results['settings']['p5_rows']:,} calls", ec.get("p5_history_s"), "<=", 1.0, " s"),
        ("P7", "provenance ingest", ec.get("p7_calls_per_s"), ">=", 10_000, " calls/s"),
    ]
    out = []
    for key, what, value, op, goal, unit in rows:
        met = None if value is None else (value <= goal if op == "<=" else value >= goal)
        out.append({"id": key, "what": what, "value": value, "goal": f"{op} {goal:g}{unit}", "op": op, "threshold": goal,
                    "unit": unit.strip(), "met": met})
    return out


def _fmt(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def table(results: dict) -> str:
    systems = results["systems"]
    base = systems.get(BASELINE, {}).get("metrics", {})
    width = max(len(BY_NAME[name].label) for name in systems) + 2
    heads = [head for _, head, _ in COLUMNS] + ["P1 vs Celery", "P2 vs Celery"]
    lines = ["system".ljust(width) + "".join(h.rjust(14) for h in heads)]
    for name, system in systems.items():
        label = BY_NAME[name].label.ljust(width)
        if system["status"] != "ok":
            lines.append(label + "  " + system["status"])
            continue
        m = system["metrics"]
        cells = [_fmt(m.get(key), fmt) for key, _, fmt in COLUMNS]
        p1 = m.get("p1_median_ms") / base["p1_median_ms"] if m.get("p1_median_ms") and base.get("p1_median_ms") else None
        p2 = m.get("p2_calls_per_s") / base["p2_calls_per_s"] if m.get("p2_calls_per_s") and base.get("p2_calls_per_s") else None
        cells += [_fmt(p1, "{:.2f}x"), _fmt(p2, "{:.2f}x")]
        lines.append(label + "".join(c.rjust(14) for c in cells))
        if system.get("errors"):
            lines.append(" " * width + "errors: " + "; ".join(system["errors"][:3]))
    ec = systems.get("elasticcode")
    if ec and ec["status"] == "ok":
        lines += ["", "ElasticCode only:"]
        for key, what, unit, fmt in EC_ONLY:
            lines.append(f"  {what:<72} {_fmt(ec['metrics'].get(key), fmt):>10} {unit}")
    raw_hops = {name: s["metrics"]["p4_plug_hop_ms"] for name, s in systems.items()
                if name != "elasticcode" and s.get("metrics", {}).get("p4_plug_hop_ms") is not None}
    if raw_hops:
        lines += ["", "P4's hop in raw Celery (on_success sends the next task), median:"]
        ec_hop = (ec or {}).get("metrics", {}).get("p4_plug_hop_ms")
        for name, hop in raw_hops.items():
            vs = f"   ElasticCode's plug hop / this: {ec_hop / hop:.2f}x" if ec_hop else ""
            lines.append(f"  {BY_NAME[name].label:<72} {hop:>10.2f} ms{vs}")
    lines += ["", "Targets (ElasticCode):"]
    for t in results["targets"]:
        value = "-" if t["value"] is None else f"{t['value']:.3g}"
        state = {True: "met", False: "MISSED", None: "no figure"}[t["met"]]
        lines.append(f"  {t['id']}  {t['what']:<56} {value:>10} {t['unit']:<8} goal {t['goal']:<16} {state}")
    return "\n".join(lines)


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def plot(results: dict, path: Path) -> None:
    """The table as bar charts: one panel per measure, ElasticCode's targets drawn as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = {name: s for name, s in results["systems"].items() if s["status"] == "ok"}
    names = list(systems)
    colors = ["#d62728" if name == "elasticcode" else "#1f77b4" if name.startswith("celery") else "#7f7f7f" for name in names]
    n = results["settings"]["workers"]
    base = systems.get(BASELINE, {}).get("metrics", {})
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    panels = (
        ("p1_median_ms", "P1 round trip, median (ms)", 1.10 * base["p1_median_ms"] if base.get("p1_median_ms") else None),
        ("p1_p95_ms", "P1 round trip, p95 (ms)", None),
        ("p2_calls_per_s", "P2 throughput (calls/s)", 0.90 * base["p2_calls_per_s"] if base.get("p2_calls_per_s") else None),
        ("p3_speedup", f"P3 CPU-bound speedup, 1 -> {n} processes", 0.9 * n),
    )
    for ax, (key, title, goal) in zip(axes.flat, panels, strict=False):
        values = [systems[name]["metrics"].get(key) or 0 for name in names]
        ax.bar(range(len(names)), values, color=colors)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_title(title)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8)
        if goal is not None:
            ax.axhline(goal, color="#d62728", linestyle="--", linewidth=1, label="ElasticCode target")
            ax.legend(fontsize=8)
    ec = systems.get("elasticcode", {}).get("metrics", {})
    ax = axes.flat[4]
    hops = [("plug hop", ec.get("p4_plug_hop_ms")), ("join hop", ec.get("p4_join_hop_ms")),
            *((f"hop, {name}", s["metrics"].get("p4_plug_hop_ms")) for name, s in systems.items()
              if name.startswith("celery") and s["metrics"].get("p4_plug_hop_ms") is not None)]
    ax.bar([h for h, _ in hops], [v or 0 for _, v in hops], color=["#d62728", "#d62728"] + ["#1f77b4"] * (len(hops) - 2))
    for i, (_, v) in enumerate(hops):
        ax.annotate(f"{v or 0:.3g}", (i, v or 0), ha="center", va="bottom", fontsize=8)
    ax.axhline(2.0, color="black", linestyle="--", linewidth=1, label="target 2 ms")
    ax.set_title("P4 hop, median (ms): ElasticCode; raw Celery's on_success")
    ax.legend(fontsize=8)
    ax = axes.flat[5]
    p5, p7 = ec.get("p5_history_s"), ec.get("p7_calls_per_s")
    ax.bar(["P5 history() (s)", "P7 ingest (k calls/s)"], [p5 or 0, (p7 or 0) / 1000], color="#d62728")
    for i, v in enumerate((p5 or 0, (p7 or 0) / 1000)):
        ax.annotate(f"{v:.3g}", (i, v), ha="center", va="bottom", fontsize=8)
    ax.plot([-0.4, 0.4], [1.0, 1.0], "k--", linewidth=1)
    ax.plot([0.6, 1.4], [10.0, 10.0], "k--", linewidth=1, label="targets: <= 1 s, >= 10k calls/s")
    ax.set_title(f"P5 history() of {results['settings']['p5_rows']:,} calls; P7 ingest")
    ax.legend(fontsize=8)
    machine = results["machine"]
    fig.suptitle(f"python -m bench, {results['date']}, {machine['hostname']}: {machine['cores']} cores, {machine['cpu']}, "
                 f"load {results['load']['before'][0]:.2f} -> {results['load']['after'][0]:.2f}"
                 f"{' (smoke)' if results['settings']['smoke'] else ''}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
