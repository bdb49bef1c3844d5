"""Smoke run of the benchmark harness, so bench/ does not rot.

Runs `bench/run.py --quick` against every broker installed here (bootbus
included) and checks that the table and the JSON carry every workload for
every broker with positive, finite numbers. It never asserts timings or
ratios: those depend on the machine and belong in the report, not in a test.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / "bench" / "run.py"
RUN_TIMEOUT_S = 180  # a quick run takes about 10 s; this only catches a hang
STOP_TIMEOUT_S = 60

# Per workload: the median metrics that must be positive numbers.
POSITIVE = {
    "rtt": ["calls_per_s", "cpu_us_per_call", "p50_us", "p99_us", "busy"],
    "rtt-fd": ["calls_per_s", "cpu_us_per_call", "p50_us", "p99_us", "busy"],
    "tput-64": ["msgs_per_s", "cpu_us_per_msg", "busy", "client_busy"],
    "tput-4k": ["msgs_per_s", "cpu_us_per_msg", "busy", "client_busy"],
    "fanout": ["deliveries_per_s", "cpu_us_per_delivery", "busy", "client_busy"],
    "connect": ["conns_per_s", "cpu_us_per_conn", "busy", "client_busy"],
    "startup": ["startup_ms", "cpu_ms"],
    "memory": ["rss_idle_kib", "rss_clients_kib", "kib_per_client", "clients"],
    "reexec": ["pause_ms", "reply_ms", "clients"],
}
TITLES = {"rtt": "rtt", "rtt-fd": "rtt, fds", "tput-64": "tput 64 B", "tput-4k": "tput 4 KiB",
          "fanout": "fanout 8+8", "connect": "connect", "startup": "startup",
          "memory": "memory", "reexec": "re-exec pause"}


def expected_brokers() -> list[str]:
    """The brokers installed here, which the harness must not silently skip."""
    found = []
    if (REPO / "bootbus" / "__main__.py").exists():
        found.append("bootbus")
    if shutil.which("dbus-daemon"):
        found.append("dbus-daemon")
    if shutil.which("dbus-broker-launch") and os.geteuid() == 0 and subprocess.run(
            ["unshare", "-m", "true"], check=False, capture_output=True).returncode == 0:
        found.append("dbus-broker")  # launched in a private mount namespace
    return found


def positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    if not shutil.which("gcc"):
        pytest.skip("gcc is missing: the load generator is C, built at run time")
    if not expected_brokers():
        pytest.skip("no broker installed (bootbus, dbus-daemon or dbus-broker)")
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    proc = subprocess.Popen([sys.executable, str(RUN), "--quick", "--output", str(out)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.terminate()  # SIGTERM: run.py stops its brokers; SIGKILL would orphan them
        stdout, stderr = proc.communicate(timeout=STOP_TIMEOUT_S)
        pytest.fail(f"bench/run.py --quick took over {RUN_TIMEOUT_S} s:\n{stderr[-4000:]}")
    assert proc.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr[-4000:]}"
    return stdout, json.loads(out.read_text())


@pytest.mark.reference
def test_every_installed_broker_ran(quick_run: tuple[str, dict[str, Any]]) -> None:
    _, doc = quick_run
    assert doc["config"]["brokers"] == expected_brokers()
    assert doc["config"]["workloads"] == list(POSITIVE)
    for name in doc["config"]["brokers"]:
        assert doc["brokers"][name]["version"]
        assert doc["brokers"][name]["cpu_measured"]


@pytest.mark.reference
def test_json_has_positive_numbers_for_every_workload(
        quick_run: tuple[str, dict[str, Any]]) -> None:
    _, doc = quick_run
    for workload, keys in POSITIVE.items():
        results = doc["workloads"][workload]["results"]
        for broker in doc["config"]["brokers"]:
            summary = results[broker]
            if workload == "reexec" and broker != "bootbus":
                assert "not_applicable" in summary
                continue
            if workload == "reexec" and "skipped" in summary:
                # bootbus without Reexec yet: the reason must say so.
                assert "Reexec" in summary["skipped"]
                continue
            assert "errors" not in summary, (workload, broker, summary)
            median = summary["median"]
            for key in keys:
                assert positive(median[key]), (workload, broker, key, median.get(key))
            if workload == "memory":
                assert median["rss_clients_kib"] >= median["rss_idle_kib"] > 0
            if workload == "reexec":
                assert median["clients"] == doc["config"]["clients"]


@pytest.mark.reference
def test_ratios_are_relative_to_dbus_daemon(quick_run: tuple[str, dict[str, Any]]) -> None:
    _, doc = quick_run
    if "dbus-daemon" not in doc["config"]["brokers"]:
        pytest.skip("dbus-daemon is not installed: no reference for ratios")
    for workload in ("rtt", "rtt-fd", "tput-64", "tput-4k", "fanout", "connect", "startup",
                     "memory"):
        results = doc["workloads"][workload]["results"]
        assert results["dbus-daemon"]["ratio_to_dbus_daemon"] == pytest.approx(1.0)
        for broker in doc["config"]["brokers"]:
            assert positive(results[broker]["ratio_to_dbus_daemon"]), (workload, broker)


@pytest.mark.reference
def test_table_has_a_row_per_workload_and_broker(quick_run: tuple[str, dict[str, Any]]) -> None:
    table, doc = quick_run
    rows = [line.split() for line in table.splitlines()]
    for workload, title in TITLES.items():
        for broker in doc["config"]["brokers"]:
            if workload == "reexec" and broker != "bootbus":
                continue
            words = title.split() + [broker]
            matching = [r for r in rows if r[:len(words)] == words]
            assert len(matching) == 1, (workload, broker)
            assert "FAILED" not in matching[0]
    assert "vs dbus-daemon" in table
