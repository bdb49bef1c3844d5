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
        unit = modules / "99bootbus" / "bootbus-initrd.service"
        text = unit.read_text()
        unit.unlink()  # never write through a symlink into units/
        unit.write_text(text)
        strip_at(unit)
        strip_at(modules / "99bootbus" / "bootbus-start.sh")
    return base


def strip_at(path: Path) -> None:
    """Negative control: the daemon without '@' in argv[0], at start and on re-exec.

    BOOTBUS_ARGV0 asks the daemon to re-execute itself under that name
    instead of choosing '@bootbus' (what it does in an initramfs).
    """
    text = path.read_text()
    text = text.replace("ExecStart=@/usr/bin/python3 @bootbus ",
                        "Environment=BOOTBUS_ARGV0=bootbus\nExecStart=/usr/bin/python3 ")
    text = text.replace("exec -a @bootbus ", "BOOTBUS_ARGV0=bootbus exec ")
    path.write_text(text)


def build_initramfs(work: Path, kernel: Kernel, variant: Variant,
                    modules: str = DRACUT_BASE_MODULES, name: str = "initrd.img") -> Path:
    base = work / "dracut"
    if not base.exists():
        private_dracut(work, variant)
    output = work / name
    if variant.systemd_initramfs:
        modules = f"{DRACUT_SYSTEMD_MODULES} {modules}"
    env = {**os.environ, "dracutbasedir": str(base), "BOOTBUS_SOURCE": str(REPO)}
    (work / "no-conf.d").mkdir(exist_ok=True)
    started = time.monotonic()
    run("dracut", "--quiet", "--force", "--no-hostonly", "--no-hostonly-cmdline",
        "--conf", "/dev/null", "--confdir", work / "no-conf.d", "--tmpdir", work,
        "--kver", kernel.version, "--kmoddir", kernel.modules,
        "--modules", modules, "--drivers", KERNEL_MODULES, "--no-early-microcode",
        # gzip: the guest root unpacks it again at shutdown, with zcat.
        "--gzip", output, env=env)
    log(f"initramfs {output.stat().st_size / 1e6:.1f} MB in {time.monotonic() - started:.0f}s")
    return output


def measure_size(kernel: Kernel) -> None:
    """What bootbus adds to an initramfs: each flavour built with and without 99bootbus."""
    without = DRACUT_BASE_MODULES.replace(" bootbus-vmtest", "").replace(" bootbus", "")
    with_bootbus = DRACUT_BASE_MODULES.replace(" bootbus-vmtest", "")
    for variant, label in ((Variant(), "systemd"), (Variant(systemd_initramfs=False), "shell")):
        work = Path(tempfile.mkdtemp(prefix="work-size-", dir=CACHE))
        try:
            sizes = []
            for modules, name in ((without, "without.img"), (with_bootbus, "with.img")):
                image = build_initramfs(work, kernel, variant, modules, name)
                unpacked = int(run("sh", "-c", f"/usr/lib/dracut/skipcpio {image} | zcat | wc -c"))
                sizes.append((image.stat().st_size, unpacked))
            (packed0, raw0), (packed1, raw1) = sizes
            log(f"size {label}: {packed0 / 1e6:.1f} MB -> {packed1 / 1e6:.1f} MB gzip "
                f"(+{(packed1 - packed0) / 1e6:.1f} MB), {raw0 / 1e6:.1f} -> {raw1 / 1e6:.1f} MB "
                f"cpio (+{(raw1 - raw0) / 1e6:.1f} MB)")
        finally:
            shutil.rmtree(work, ignore_errors=True)


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
    for unit in ("bootbus-vmtest.service", "bootbus-vmtest-shutdown.service"):
        shutil.copy(GUEST / unit, system / unit)
    # Like bootbus-initrd.service, the initramfs client's unit exists in the
    # real root too, so systemd still knows the unit after switch_root.
    shutil.copy(GUEST / "95bootbus-vmtest" / "bootbus-vmtest-client.service",
                system / "bootbus-vmtest-client.service")
    wants = {"sysinit.target.wants": ["bootbus-pivot.service", "bootbus-shutdown.service",
                                      "bootbus-vmtest-shutdown.service"],
             "sockets.target.wants": ["bootbus.socket"],
             "multi-user.target.wants": ["bootbus-vmtest.service"]}
    for target, names in wants.items():
        (system / target).mkdir()
        for name in names:
            if name in units or name.startswith("bootbus-vmtest"):
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
    # Seen from the shutdown root the daemon's root is "/" or, when it entered the
    # directory rather than systemd-shutdown's bind mount of it, /oldsys/run/initramfs.
    if final_daemon and (final_daemon.get("root") not in ("/", "/oldsys/run/initramfs")
                         or "/oldroot" in final_daemon.get("exe", "/oldroot")
                         or final_daemon.get("deleted_maps") != "0"):
        problems.append(f"at the last hook the daemon does not run from the shutdown "
                        f"initramfs: {final_daemon}")
    if result.find("initrd-client-lost"):
        problems.append(f"the initramfs client lost the bus: {result.find('initrd-client-lost')}")
    return problems + powered_off(result)


def check_killed_without_at(result: Boot) -> list[str]:
    """Negative control: without '@' systemd-shutdown kills the daemon before the last hook."""
    problems = control_is_valid(result)
    if not result.find("root-shutdown-initramfs"):
        problems.append("the shutdown never reached dracut-shutdown's unpack (control is void)")
    final = one(result, "final-ping", problems)
    if final and final.get("ok") == "1":
        problems.append("the daemon survived shutdown without '@' in argv[0]: "
                        "the '@' mechanism is not what keeps it alive")
    return problems + powered_off(result)


def check_killed_at_oldroot(result: Boot) -> list[str]:
    """Negative control: without the shutdown pivot dracut kills it for using /oldroot."""
    problems = control_is_valid(result)
    final = one(result, "final-ping", problems)
    if final and final.get("ok") == "1":
        problems.append("the daemon reached the last hook without the shutdown pivot: "
                        "the pivot into /run/initramfs is not what keeps it alive")
    return problems + powered_off(result)


def control_is_valid(result: Boot) -> list[str]:
    """A negative control only counts if everything up to the removed mechanism worked."""
    ping = result.find("root-ping")
    if not ping or ping[-1].get("ok") != "1":
        return ["the bus did not serve the real root (the control proves nothing)"]
    if not result.find("final-hook"):
        return ["dracut's last shutdown hook never ran (the control proves nothing)"]
    return []


def check_journal(result: Boot) -> list[str]:
    """Scenario d: the initramfs's records are in the real root's journal, with their times."""
    problems: list[str] = []
    journal = one(result, "root-journal", problems)
    if journal and journal.get("ok") != "1":
        problems.append(f"journalctl failed in the real root: {journal.get('error')}")
    elif journal:
        stamp = journal.get("listening_journal_usec", "none")
        if journal.get("early", "0") == "0" or journal.get("listening_usec") == "none":
            problems.append("the real root's journal lacks bootbus's initramfs records "
                            f"(its 'listening' record): {journal}")
        elif not stamp.isdigit() or int(stamp) >= int(journal["pivot_usec"]):
            problems.append("journalctl shows the initramfs 'listening' record with a time "
                            f"after the pivot, not its own: {journal}")
    return problems + powered_off(result)


def check_emergency_status(result: Boot) -> list[str]:
    """Scenario e: bootbusctl status works in the emergency shell and names the breakpoint."""
    problems: list[str] = []
    status = one(result, "emergency-status", problems)
    if status and status.get("rc") != "0":
        problems.append(f"bootbusctl status failed in the emergency shell (rc {status.get('rc')})")
    text = "\n".join(line for line in result.log.splitlines() if "BOOTBUS-VM-STATUS:" in line)
    if status and "pre-mount" not in text:
        problems.append("bootbusctl status does not say why the boot stopped "
                        "(no 'pre-mount' in its output)")
    return problems + powered_off(result)


def check_root_wait(result: Boot) -> list[str]:
    """Scenarios f: before switch_root the bus answered the initramfs's wait for /dev/vda.

    Both records come from the step log, written in the initramfs: the daemon's
    own record of the WaitForDevice call it answered (not a client's say-so)
    and bootbusctl wait-root's record naming root=. Without the module's hook
    or unit, or with a wait that timed out or never reached the bus, neither exists.
    """
    problems: list[str] = []
    wait = one(result, "root-rootwait", problems)
    if wait and wait.get("ok") != "1":
        problems.append(f"the step log could not be read in the real root: {wait.get('error')}")
    elif wait and wait.get("answers", "0") == "0":
        problems.append("the daemon answered no WaitForDevice for DEVNAME=/dev/vda before "
                        f"the pivot: the root wait did not go through the bus ({wait})")
    elif wait:
        log(f"     root wait: answered from the {wait.get('answered_from')} "
            f"({wait.get('monitor')} events) at {wait.get('usec')} us, pivot at "
            f"{wait.get('pivot_usec')} us, for root={wait.get('root')}")
        if wait.get("found", "0") == "0":
            problems.append("no record of bootbusctl wait-root finding root=/dev/vda through "
                            f"the bus before the pivot ({wait})")
        if wait.get("phase") != "initramfs":
            problems.append(f"the bus answered the root wait outside the initramfs: {wait}")
        if wait.get("root") not in ("/dev/vda", "block:/dev/vda"):
            problems.append(f"the wait was not for root=/dev/vda: {wait}")
    return problems + powered_off(result)


FULL = Variant()
SHELL = Variant(systemd_initramfs=False)
SCENARIOS = (
    Scenario("a-systemd", "systemd initramfs: a client from the initramfs lives to the last "
             "shutdown hook, seen from the real root", FULL, check_live_to_poweroff),
    Scenario("b-shell", "dracut shell init (no systemd in the initramfs) -> real root",
             SHELL, check_live_to_poweroff),
    # With systemd in the initramfs, a daemon without '@' dies already at switch_root
    # (PID 1 sends SIGTERM to all initramfs processes); dracut's shell init lets it
    # live to the real root, so the control isolates systemd-shutdown's killing.
    Scenario("c-no-at", "negative control: without '@' the daemon is killed at shutdown",
             Variant(systemd_initramfs=False, at_argv0=False), check_killed_without_at),
    Scenario("c-no-shutdown-pivot", "negative control: without the shutdown pivot the "
             "daemon is killed at /oldroot", Variant(shutdown_pivot=False),
             check_killed_at_oldroot),
    Scenario("d-journal", "initramfs records in the real root's journalctl, original times "
             "(same boot as a-systemd)", FULL, check_journal),
    Scenario("e-emergency", "bootbusctl status in the rd.break emergency shell says why",
             Variant(cmdline="rd.break=pre-mount rd.shell=1"), check_emergency_status),
    Scenario("f-rootwait-systemd", "systemd initramfs: bootbus-rootwait.service waited for "
             "the root disk through the bus (same boot as a-systemd)", FULL, check_root_wait),
    Scenario("f-rootwait-shell", "shell init: the initqueue hook waited for the root disk "
             "through the bus (same boot as b-shell)", SHELL, check_root_wait),
    Scenario("boot", "infrastructure only: kernel, dracut/systemd initramfs, root, shutdown "
             "hooks (not in the default set)", FULL, check_boot_infrastructure),
)
DEFAULT_SCENARIOS = tuple(s.name for s in SCENARIOS if s.name != "boot")


def boot_variant(variant: Variant, kernel: Kernel, root: Path, keep: bool, append: str,
                 label: str) -> Boot:
    work = Path(tempfile.mkdtemp(prefix=f"work-{label}-", dir=CACHE))
    try:
        initramfs = build_initramfs(work, kernel, variant)
        image = build_image(work, root, root_extras(work, kernel, initramfs, variant))
        return boot(kernel, initramfs, image, f"{CMDLINE} {variant.cmdline} {append}".strip())
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def report(scenario: Scenario, result: Boot) -> bool:
    problems = scenario.check(result)
    RESULTS.mkdir(exist_ok=True)
    log_path = RESULTS / f"{scenario.name}.log"
    events = " ".join(name for name, _ in result.markers)
    if problems:
        log_path.write_text(result.log)
        log(f"FAIL {scenario.name} ({result.seconds:.0f}s boot): " + "; ".join(problems))
        log(f"     markers: {events or 'none'}; serial log: {log_path}")
        return False
    log_path.unlink(missing_ok=True)
    log(f"PASS {scenario.name} ({result.seconds:.0f}s boot): {events}")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", help="run only these (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the scenarios")
    parser.add_argument("--measure-size", action="store_true",
                        help="only measure what bootbus adds to each initramfs flavour")
    parser.add_argument("--keep-work", action="store_true", help="keep initramfs and image")
    parser.add_argument("--append", default="", help="more kernel command line, e.g. "
                        "'systemd.journald.forward_to_console=1' to see the guest's logs")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:12} {scenario.summary}")
        return 0
    wanted = args.scenario or DEFAULT_SCENARIOS
    chosen = [s for s in SCENARIOS if s.name in wanted]
    if len(chosen) != len(set(wanted)):
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
    if args.measure_size:
        measure_size(kernel)
        return 0
    boots: dict[Variant, Boot] = {}  # scenarios of the same variant share one boot
    passed = 0
    for scenario in chosen:
        if scenario.variant not in boots:
            boots[scenario.variant] = boot_variant(scenario.variant, kernel, root,
                                                   args.keep_work, args.append, scenario.name)
        passed += report(scenario, boots[scenario.variant])
    failed = len(chosen) - passed
    log(f"total {time.monotonic() - started:.0f}s")
    print(f"vm-test: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
