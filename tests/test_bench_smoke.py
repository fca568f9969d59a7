"""CI's smoke run of the benchmark harness: `python -m bench --smoke` (a few hundred calls per system)
brings up its own stack and peers, and every system's row has numbers. Not that they are fast: the
figures are only checked to be there, so the harness cannot rot unnoticed."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import EC_KEYS, MAIN_KEYS  # noqa: E402
from bench.systems import BY_NAME, SYSTEMS, missing  # noqa: E402

LIMIT = 300  # seconds; about 80 s on the 2-core test machine, under load
pytestmark = pytest.mark.timeout(LIMIT + 180)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_python_m_bench_smoke_gives_every_system_numbers(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTICCODE_")}  # the harness makes its own stack
    proc = subprocess.Popen([sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # the harness tears down what it started
        out, _ = proc.communicate(timeout=150)
        pytest.fail(f"python -m bench --smoke took over {LIMIT} s:\n{out[-4000:]}")
    assert proc.returncode == 0, out[-4000:]

    [result] = tmp_path.glob("*-smoke.json")
    assert result.with_suffix(".png").stat().st_size > 10_000
    results = json.loads(result.read_text())
    assert results["load"]["uptime_before"] and results["machine"]["cores"] == os.cpu_count()
    for entry in SYSTEMS:
        row = results["systems"][entry.name]
        if missing(entry):
            assert row["status"].startswith("not installed"), row["status"]
            continue
        assert row["status"] == "ok", (entry.name, row["status"], row["errors"])
        assert not row["errors"], (entry.name, row["errors"])
        for key in MAIN_KEYS:
            assert _number(row["metrics"].get(key)), (entry.name, key, row["metrics"])
        if entry.name.startswith("celery"):  # P4's hop, the same way in raw Celery
            assert _number(row["metrics"].get("p4_plug_hop_ms")), (entry.name, row["metrics"])
        assert entry.label in out
    if not missing(BY_NAME["elasticcode"]):
        ec = results["systems"]["elasticcode"]["metrics"]
        for key in EC_KEYS:
            assert _number(ec.get(key)), (key, ec)
        if not missing(BY_NAME["celery"]):
            assert all(t["value"] is not None and t["met"] in (True, False) for t in results["targets"]), results["targets"]


def test_latency_harness_smoke_gives_numbers_through_a_delayed_broker(tmp_path):
    """`bench/latency.py` (P6) with a few calls: the proxy holds each way for the delay asked (a
    PING through it takes at least two of them more), every figure is there, and each system's
    far call takes at least one more round trip than its near one (a call needs its message and
    its result to cross the broker's link at least once)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELASTICCODE_")}
    out_file = tmp_path / "p6.json"
    proc = subprocess.Popen([sys.executable, "bench/latency.py", "--calls", "20", "--burst", "40", "--delay-ms", "1",
                             "--json", str(out_file)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=150)
        pytest.fail(f"bench/latency.py took over {LIMIT} s:\n{out[-4000:]}")
    assert proc.returncode == 0, out[-4000:]
    figures = json.loads(out_file.read_text())
    added = figures["ping_ms"]["far"] - figures["ping_ms"]["near"]
    assert added >= 2 * 1.0, figures["ping_ms"]
    medians = figures["p1_median_ms"]
    assert set(medians) == {"ElasticCode near", "ElasticCode far", "Celery near", "Celery far"}
    for system in ("ElasticCode", "Celery"):
        assert medians[f"{system} far"] >= medians[f"{system} near"] + added, medians
    assert all(_number(v) for v in [*medians.values(), *figures["p2_calls_per_s"].values(), figures["p2_ratio"]])
