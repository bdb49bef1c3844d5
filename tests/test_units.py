"""units/: systemd accepts them, and they say what the boot integration relies on.

`systemd-analyze verify` runs against a small root holding the programs the
units execute, so a missing or misspelt command is caught too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parent.parent / "units"
UNIT_FILES = sorted(p for p in UNITS.iterdir() if p.suffix in (".service", ".socket"))
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                reason="systemd-analyze is missing (make test-deps installs it)")


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (keys may repeat), as systemd reads them."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def executables(paths: list[Path]) -> set[str]:
    """Absolute programs named by the Exec*= lines, their prefixes (@, -, :, +, !) removed."""
    found = set()
    for path in paths:
        for key, values in parse_unit(path).get("Service", {}).items():
            if key.startswith("Exec"):
                for value in values:
                    found.add(value.lstrip("@-:+!").split()[0])
    return found


def make_root(tmp_path: Path, programs: set[str]) -> Path:
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    for program in programs:
        target = root / program.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.write_text("#!/bin/sh\n")
            target.chmod(0o755)
    for unit in UNIT_FILES:
        shutil.copy(unit, root / "etc" / "systemd" / "system" / unit.name)
    return root


def verify(root: Path, units: list[Path]) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run([SYSTEMD_ANALYZE, f"--root={root}", "--man=no", "verify",
                           *map(str, units)], capture_output=True, text=True, check=False)


def test_all_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    root = make_root(tmp_path, executables(UNIT_FILES))
    result = verify(root, UNIT_FILES)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""


def test_verify_catches_a_missing_program(tmp_path: Path) -> None:
    """The check has teeth: without bootbusctl in the root, verify fails."""
    root = make_root(tmp_path, executables(UNIT_FILES) - {"/usr/bin/bootbusctl"})
    result = verify(root, UNIT_FILES)
    assert result.returncode != 0
    assert "/usr/bin/bootbusctl" in result.stderr


def test_initrd_service_survives_isolate_and_the_final_killing() -> None:
    unit = parse_unit(UNITS / "bootbus-initrd.service")
    assert unit["Unit"]["DefaultDependencies"] == ["no"]
    assert unit["Unit"]["IgnoreOnIsolate"] == ["yes"]
    assert "Conflicts" not in unit["Unit"]  # shutdown.target must not stop it
    program, argv0, *_ = unit["Service"]["ExecStart"][0].split()
    assert program == "@/usr/bin/python3" and argv0.startswith("@")
    assert unit["Service"]["Type"] == ["notify"]


def test_real_root_service_keeps_sockets_across_a_crash() -> None:
    service = parse_unit(UNITS / "bootbus.service")["Service"]
    assert service["Type"] == ["notify"]
    assert service["Restart"] == ["on-failure"]
    assert int(service["FileDescriptorStoreMax"][0]) > 0
    assert service["Sockets"] == ["bootbus.socket"]


def test_shutdown_unit_stops_after_dracut_unpacked_the_initramfs() -> None:
    unit = parse_unit(UNITS / "bootbus-shutdown.service")
    before = " ".join(unit["Unit"]["Before"]).split()
    assert "dracut-shutdown.service" in before  # stop order is the reverse of start order
    assert any("pivot /run/initramfs" in line for line in unit["Service"]["ExecStop"])


def test_root_wait_unit_orders_the_root_mount_but_never_holds_it() -> None:
    """bootbus-rootwait.service comes before the root mount; a bus that fails to serve,
    a timeout or a failed wait must leave systemd's own wait for the device in charge."""
    unit = parse_unit(UNITS / "bootbus-rootwait.service")
    before = " ".join(unit["Unit"]["Before"]).split()
    assert {"initrd-root-device.target", "sysroot.mount"} <= set(before)
    assert unit["Unit"]["DefaultDependencies"] == ["no"]
    assert "bootbus-initrd.service" in unit["Unit"]["After"]
    assert not {"Requires", "BindsTo", "Requisite"} & unit["Unit"].keys()
    assert "/run/bootbus/initrd-bus" in unit["Unit"]["ConditionPathExists"]
    assert unit["Service"]["Type"] == ["oneshot"]
    assert unit["Service"]["ExecStart"] == ["-/usr/bin/bootbus-rootwait"]  # failure ignored
    # the module wants it from the target, it does not require it
    setup = (UNITS.parent / "dracut" / "99bootbus" / "module-setup.sh").read_text()
    assert "initrd-root-device.target.wants/bootbus-rootwait.service" in setup
