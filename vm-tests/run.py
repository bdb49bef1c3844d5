#!/usr/bin/python3
"""Boot tests: Debian's kernel, a dracut initramfs with bootbus, a systemd root, poweroff.

Prepares what is missing (host packages, the kernel, a debootstrap root,
both cached outside the checkout and keyed by package versions), then per
scenario builds an initramfs with dracut (a private dracutbasedir holding
dracut/99bootbus and the test module vm-tests/guest/95bootbus-vmtest), an
ext4 image of the root with bootbus, its units and the test client, and
boots it under qemu, reading `BOOTBUS-VM:` markers from the serial console.
A scenario passes only when its markers hold and the guest powered itself
off; a failing one leaves its serial log in vm-tests/results/.

    vm-tests/run.py [--scenario NAME ...] [--list] [--cache DIR] [--keep-work]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GUEST = HERE / "guest"
RESULTS = HERE / "results"
CACHE = Path(os.environ.get("BOOTBUS_VM_CACHE", "/var/cache/bootbus-vm"))

HOST_DEBS = ("qemu-system-x86", "dracut-core", "debootstrap", "e2fsprogs", "cpio", "kmod",
             "python3-pyelftools", "python3-jeepney", "binutils")
SUITE = "bookworm"
ROOT_PACKAGES = ("systemd-sysv", "udev", "python3", "kmod", "cpio", "dracut-core",
                 "python3-jeepney", "python3-click", "python3-systemd", "python3-pyudev")
# Units a test boot has no use for; masked to keep the boot short and the console clean.
MASKED_UNITS = ("getty@tty1.service", "serial-getty@ttyS0.service", "systemd-timesyncd.service",
                "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
                "fstrim.timer", "dpkg-db-backup.timer", "systemd-firstboot.service")
KERNEL_MODULES = "virtio_pci virtio_blk ext4"
DRACUT_SYSTEMD_MODULES = "systemd systemd-initrd dracut-systemd"
DRACUT_BASE_MODULES = "base rootfs-block kernel-modules shutdown bootbus bootbus-vmtest"
QEMU = ("qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024",
        "-snapshot", "-no-reboot", "-nodefaults", "-display", "none", "-monitor", "none",
        "-chardev", "stdio,id=s0,signal=off", "-serial", "chardev:s0", "-nic", "none")
CMDLINE = ("console=ttyS0 root=/dev/vda rw panic=-1 quiet systemd.show_status=false "
           "rd.shell=0 rd.emergency=poweroff")
BOOT_TIMEOUT_SECONDS = 240
IMAGE_SLACK_BYTES = 256 << 20
MARKER = re.compile(r"BOOTBUS-VM: (\S+)(.*)$")


def log(message: str) -> None:
    print(f"[vm-test {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(*argv: str | Path, **kwargs: object) -> str:
    kwargs.setdefault("stdout", subprocess.PIPE)
    result = subprocess.run([str(a) for a in argv], check=True, text=True,
                            **kwargs)  # type: ignore[call-overload]
    return str(result.stdout)


# --- host, kernel and root --------------------------------------------------

def ensure_host_packages() -> None:
    run(REPO / ".ci" / "apt-ensure", *HOST_DEBS, stdout=None)


def candidate_version(package: str) -> str:
    for line in run("apt-cache", "policy", package).splitlines():
        if line.strip().startswith("Candidate:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit(f"apt knows no package {package} (run apt-get update)")


@dataclasses.dataclass(frozen=True)
class Kernel:
    version: str
    image: Path
    modules: Path


def prepare_kernel() -> Kernel:
    """Debian's current kernel package, extracted (not installed) and depmod'ed."""
    show = run("apt-cache", "show", "--no-all-versions", "linux-image-amd64")
    match = re.search(r"^Depends:.*?(linux-image-(\S+?-amd64))\b", show, re.MULTILINE)
    if not match:
        raise SystemExit("cannot find the kernel package linux-image-amd64 depends on")
    package, version = match.group(1), match.group(2)
    tree = CACHE / f"kernel-{package}_{candidate_version(package)}"
    if not (tree / ".done").exists():
        log(f"preparing kernel {package}")
        shutil.rmtree(tree, ignore_errors=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as download:
            run("apt-get", "download", "-q", package, cwd=download)
            deb = next(Path(download).glob("*.deb"))
            run("dpkg-deb", "-x", deb, tree)
        run("depmod", "-b", tree, version)
        (tree / ".done").touch()
    return Kernel(version, tree / "boot" / f"vmlinuz-{version}",
                  tree / "lib" / "modules" / version)


def debian_mirror() -> str:
    """The Debian mirror apt already uses, from its sources."""
    sources = Path("/etc/apt/sources.list.d")
    texts = [p.read_text() for p in sorted(sources.glob("*.sources"))]
    for text in texts:
        for block in text.split("\n\n"):
            if re.search(rf"^Suites:.*\b{SUITE}\b", block, re.MULTILINE) and "security" not in block:
                uri = re.search(r"^URIs:\s*(\S+)", block, re.MULTILINE)
                if uri:
                    return uri.group(1)
    listing = Path("/etc/apt/sources.list")
    if listing.exists():
        for line in listing.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    raise SystemExit(f"no Debian {SUITE} mirror in apt's sources")


def prepare_root() -> Path:
    """A minimal Debian root with systemd and python3, built once per set of versions."""
    mirror = debian_mirror()
    versions = [f"{p}={candidate_version(p)}" for p in sorted(ROOT_PACKAGES)]
    key = hashlib.sha256("\n".join([SUITE, mirror, *versions, *MASKED_UNITS]).encode())
    root = CACHE / f"root-{SUITE}-{key.hexdigest()[:16]}"
    if (root / ".done").exists():
        return root
    log(f"debootstrap {SUITE} from {mirror} into {root}")
    shutil.rmtree(root, ignore_errors=True)
    started = time.monotonic()
    run("debootstrap", "--variant=minbase", f"--include={','.join(ROOT_PACKAGES)}",
        SUITE, root, mirror, stdout=subprocess.DEVNULL)
    (root / "etc" / "hostname").write_text("bootbus-vm\n")
    (root / "etc" / "machine-id").write_text(hashlib.md5(key.digest()).hexdigest() + "\n")
    for unit in MASKED_UNITS:
        link = root / "etc" / "systemd" / "system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    shutil.rmtree(root / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (root / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
    (root / ".done").touch()
    log(f"root ready in {time.monotonic() - started:.0f}s")
    return root


# --- per-scenario builds ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Variant:
    """How a scenario's boot differs from the full integration."""

    systemd_initramfs: bool = True
    at_argv0: bool = True          # '@' in the bus daemon's argv[0]
    shutdown_pivot: bool = True    # bootbus-shutdown.service in the real root
    cmdline: str = ""


def private_dracut(work: Path, variant: Variant) -> Path:
    """A copy of /usr/lib/dracut with our modules added (dracut has no extra module dir)."""
    base = work / "dracut"
    shutil.copytree("/usr/lib/dracut", base, symlinks=True)
    modules = base / "modules.d"
    shutil.copytree(REPO / "dracut" / "99bootbus", modules / "99bootbus")
    shutil.copytree(GUEST / "95bootbus-vmtest", modules / "95bootbus-vmtest")
    if not variant.at_argv0:
        strip_at(modules / "99bootbus" / "bootbus-initrd.service")
        strip_at(modules / "99bootbus" / "bootbus-start.sh")
    return base


def strip_at(path: Path) -> None:
    """Negative control: start the daemon without '@' in argv[0]."""
    text = path.read_text()
    text = text.replace("ExecStart=@/usr/bin/python3 @bootbus ", "ExecStart=/usr/bin/python3 ")
    text = text.replace("exec -a @bootbus ", "exec ")
    path.write_text(text)


def build_initramfs(work: Path, kernel: Kernel, variant: Variant) -> Path:
    base = private_dracut(work, variant)
    output = work / "initrd.img"
    modules = DRACUT_BASE_MODULES
    if variant.systemd_initramfs:
        modules = f"{DRACUT_SYSTEMD_MODULES} {modules}"
    env = {**os.environ, "dracutbasedir": str(base), "BOOTBUS_SOURCE": str(REPO)}
    (work / "no-conf.d").mkdir()
    started = time.monotonic()
    run("dracut", "--quiet", "--force", "--no-hostonly", "--no-hostonly-cmdline",
        "--conf", "/dev/null", "--confdir", work / "no-conf.d", "--tmpdir", work,
        "--kver", kernel.version, "--kmoddir", kernel.modules,
        "--modules", modules, "--drivers", KERNEL_MODULES, "--no-early-microcode",
        # gzip: the guest root unpacks it again at shutdown, with zcat.
        "--gzip", output, env=env)
    log(f"initramfs {output.stat().st_size / 1e6:.1f} MB in {time.monotonic() - started:.0f}s")
    return output


def root_extras(work: Path, kernel: Kernel, initramfs: Path, variant: Variant) -> Path:
    """The files a scenario adds to the cached root: bootbus, units, the test client."""
    extra = work / "extra"
    site = extra / "usr" / "lib" / "python3" / "dist-packages"
    shutil.copytree(REPO / "bootbus", site / "bootbus",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    bin_dir = extra / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy(REPO / "dracut" / "99bootbus" / "bootbusctl.sh", bin_dir / "bootbusctl")
    (extra / "usr" / "lib" / "bootbus-vmtest").mkdir(parents=True)
    shutil.copy(GUEST / "vmclient.py", extra / "usr" / "lib" / "bootbus-vmtest" / "vmclient.py")
    (extra / "boot").mkdir()
    # Where dracut-initramfs-restore looks for the image to unpack at shutdown.
    shutil.copy(initramfs, extra / "boot" / f"initrd.img-{kernel.version}")
    system = extra / "etc" / "systemd" / "system"
    units = ["bootbus.socket", "bootbus.service", "bootbus-pivot.service",
             "bootbus-initrd.service"]
    if variant.shutdown_pivot:
        units.append("bootbus-shutdown.service")
    system.mkdir(parents=True)
    for unit in units:
        shutil.copy(REPO / "units" / unit, system / unit)
    shutil.copy(GUEST / "bootbus-vmtest.service", system / "bootbus-vmtest.service")
    # Like bootbus-initrd.service, the initramfs client's unit exists in the
    # real root too, so systemd still knows the unit after switch_root.
    shutil.copy(GUEST / "95bootbus-vmtest" / "bootbus-vmtest-client.service",
                system / "bootbus-vmtest-client.service")
    wants = {"sysinit.target.wants": ["bootbus-pivot.service", "bootbus-shutdown.service"],
             "sockets.target.wants": ["bootbus.socket"],
             "multi-user.target.wants": ["bootbus-vmtest.service"]}
    for target, names in wants.items():
        (system / target).mkdir()
        for name in names:
            if name in units or name == "bootbus-vmtest.service":
                (system / target / name).symlink_to(f"/etc/systemd/system/{name}")
    return extra


@contextmanager
def overlay(lower: Sequence[Path], mountpoint: Path) -> Iterator[Path]:
    """A read-only union of directories (the first wins), unmounted afterwards."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    run("mount", "-t", "overlay", "overlay", "-o",
        "lowerdir=" + ":".join(str(p) for p in lower), mountpoint)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=False)


def build_image(work: Path, root: Path, extra: Path) -> Path:
    image = work / "root.ext4"
    with overlay([extra, root], work / "merged") as merged:
        used = int(run("du", "-sb", "--apparent-size", merged).split()[0])
        size_kib = (used * 3 // 2 + IMAGE_SLACK_BYTES) // 1024
        run("mke2fs", "-q", "-t", "ext4", "-L", "bootbus-root", "-d", merged, "-F", image,
            f"{size_kib}k")
    return image


# --- booting and markers ------------------------------------------------------

@dataclasses.dataclass
class Boot:
    markers: list[tuple[str, dict[str, str]]]
    exit_code: int | None
    timed_out: bool
    seconds: float
    log: str

    def find(self, event: str) -> list[dict[str, str]]:
        return [values for name, values in self.markers if name == event]


def parse_marker(line: str) -> tuple[str, dict[str, str]] | None:
    match = MARKER.search(line)
    if not match:
        return None
    values = dict(part.split("=", 1) for part in match.group(2).split() if "=" in part)
    return match.group(1), values


def boot(kernel: Kernel, initramfs: Path, image: Path, cmdline: str) -> Boot:
    argv = [*QEMU, "-kernel", str(kernel.image), "-initrd", str(initramfs),
            "-append", cmdline, "-drive", f"file={image},format=raw,if=virtio"]
    started = time.monotonic()
    lines: list[str] = []
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    assert process.stdout is not None
    pending = b""
    timed_out = False
    while True:
        remaining = BOOT_TIMEOUT_SECONDS - (time.monotonic() - started)
        if remaining <= 0:
            timed_out = True
            process.kill()
            break
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(process.stdout.fileno(), 65536)
        if not chunk:
            break
        pending += chunk
        *complete, pending = pending.split(b"\n")
        lines.extend(line.decode("utf-8", "replace").rstrip("\r") for line in complete)
    lines.append(pending.decode("utf-8", "replace"))
    exit_code = process.wait()
    markers = [m for m in map(parse_marker, lines) if m]
    return Boot(markers, None if timed_out else exit_code, timed_out,
                time.monotonic() - started, "\n".join(lines))


# --- scenarios ----------------------------------------------------------------

Check = Callable[[Boot], list[str]]


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    variant: Variant
    check: Check


def powered_off(result: Boot) -> list[str]:
    if result.timed_out:
        return [f"no poweroff within {BOOT_TIMEOUT_SECONDS}s (qemu killed)"]
    if result.exit_code != 0:
        return [f"qemu exited with {result.exit_code}"]
    return []


def one(result: Boot, event: str, problems: list[str]) -> dict[str, str]:
    found = result.find(event)
    if not found:
        problems.append(f"no '{event}' marker")
        return {}
    return found[-1]


def check_boot_infrastructure(result: Boot) -> list[str]:
    """Kernel, initramfs hooks, real root and the final shutdown hook all ran."""
    problems: list[str] = []
    one(result, "initrd-pre-pivot", problems)
    one(result, "root-up", problems)
    one(result, "final-hook", problems)
    return problems + powered_off(result)


def check_live_to_poweroff(result: Boot) -> list[str]:
    """Scenario a/b: one initramfs client keeps its name from the initramfs to the last hook."""
    problems: list[str] = []
    client = one(result, "initrd-client", problems)
    unique = client.get("unique")
    if client and client.get("request_name") != "1":
        problems.append(f"initramfs client did not become primary owner: {client}")
    for tag, where in (("root", "the real root"), ("final", "dracut's last shutdown hook")):
        ping = one(result, f"{tag}-ping", problems)
        if ping and ping.get("ok") != "1":
            problems.append(f"Ping from {where} failed: {ping.get('error')}")
        elif ping and (ping.get("server") != unique or ping.get("owner") != unique):
            problems.append(f"in {where} the initramfs client {unique} is not the one "
                            f"answering: {ping}")
    bus_ids = {p.get("bus_id") for tag in ("root", "final") for p in result.find(f"{tag}-ping")
               if p.get("ok") == "1"}
    if len(bus_ids) > 1:
        problems.append(f"bus id changed: {bus_ids}")
    root_daemon = one(result, "root-daemon", problems)
    if root_daemon and ("initramfs" in root_daemon.get("exe", "")
                        or "(deleted)" in root_daemon.get("exe", "")
                        or root_daemon.get("deleted_maps", "0") != "0"):
        problems.append("in the real root the daemon still runs from the deleted initramfs "
                        f"(pivot not completed): {root_daemon}")
    final_daemon = one(result, "final-daemon", problems)
    if final_daemon and final_daemon.get("root") != "/":
        problems.append(f"at the last hook the daemon is not rooted in /run/initramfs: "
                        f"{final_daemon}")
    if result.find("initrd-client-lost"):
        problems.append(f"the initramfs client lost the bus: {result.find('initrd-client-lost')}")
    return problems + powered_off(result)


def check_killed_without_at(result: Boot) -> list[str]:
    """Negative control: without '@' the daemon does not reach the last shutdown hook."""
    problems: list[str] = []
    if not result.find("root-ping") or result.find("root-ping")[-1].get("ok") != "1":
        problems.append("the bus did not even serve in the real root (control is void)")
    final = one(result, "final-ping", problems)
    if final and final.get("ok") == "1":
        problems.append("the daemon survived shutdown without '@' in argv[0]: "
                        "the '@' mechanism is not what keeps it alive")
    return problems + powered_off(result)


SCENARIOS = (
    Scenario("boot", "kernel + dracut/systemd initramfs + root + shutdown hooks (no bus needed)",
             Variant(), check_boot_infrastructure),
    Scenario("a-systemd", "systemd initramfs: a client from the initramfs lives to the last "
             "shutdown hook, seen from the real root", Variant(), check_live_to_poweroff),
    Scenario("b-shell", "dracut shell init (no systemd in the initramfs) -> real root",
             Variant(systemd_initramfs=False), check_live_to_poweroff),
    Scenario("c-no-at", "negative control: without '@' the daemon is killed at shutdown",
             Variant(at_argv0=False), check_killed_without_at),
)


def run_scenario(scenario: Scenario, kernel: Kernel, root: Path, keep: bool,
                 append: str = "") -> bool:
    work = Path(tempfile.mkdtemp(prefix=f"work-{scenario.name}-", dir=CACHE))
    try:
        initramfs = build_initramfs(work, kernel, scenario.variant)
        image = build_image(work, root, root_extras(work, kernel, initramfs, scenario.variant))
        cmdline = f"{CMDLINE} {scenario.variant.cmdline} {append}".strip()
        result = boot(kernel, initramfs, image, cmdline)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    problems = scenario.check(result)
    RESULTS.mkdir(exist_ok=True)
    log_path = RESULTS / f"{scenario.name}.log"
    log_path.write_text(result.log)
    events = " ".join(name for name, _ in result.markers)
    if problems:
        log(f"FAIL {scenario.name} ({result.seconds:.0f}s): " + "; ".join(problems))
        log(f"     markers: {events or 'none'}; serial log: {log_path}")
        return False
    log(f"PASS {scenario.name} ({result.seconds:.0f}s): {events}")
    log_path.unlink()
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", help="run only these (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument("--keep-work", action="store_true", help="keep initramfs and image")
    parser.add_argument("--append", default="", help="more kernel command line, e.g. "
                        "'systemd.journald.forward_to_console=1' to see the guest's logs")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:12} {scenario.summary}")
        return 0
    chosen = [s for s in SCENARIOS if not args.scenario or s.name in args.scenario]
    if args.scenario and len(chosen) != len(args.scenario):
        parser.error(f"unknown scenario in {args.scenario}")
    if os.geteuid() != 0:
        print("vm-tests need root (debootstrap, mount, mke2fs -d)", file=sys.stderr)
        return 2
    started = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    ensure_host_packages()
    kernel = prepare_kernel()
    root = prepare_root()
    log(f"set-up done in {time.monotonic() - started:.0f}s (kernel {kernel.version})")
    passed = sum(run_scenario(s, kernel, root, args.keep_work, args.append) for s in chosen)
    failed = len(chosen) - passed
    print(f"vm-test: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
