"""bootbus.initramfs: the file list for an initramfs, checked against the real loader.

ldd and ldconfig are used here only as oracles: the module must agree with
them without running them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bootbus import initramfs
from bootbus.initramfs import InitramfsError, LibraryResolver, elf_closure

PYTHON_BINARY = os.path.realpath("/usr/bin/python3")
PACKAGE_DIR = Path(initramfs.__file__).resolve().parent
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
SSL_EXTENSION = next(Path("/usr/lib/python3.11/lib-dynload").glob("_ssl.*.so"), None)


def ldd(path: str, env: dict[str, str] | None = None) -> dict[str, str | None]:
    """soname -> resolved realpath (None for 'not found'), as the real loader says."""
    output = subprocess.run(["ldd", path], capture_output=True, text=True, check=True,
                            env=env).stdout
    found: dict[str, str | None] = {}
    for line in output.splitlines():
        match = re.match(r"\s*(\S+) => (not found|(\S+) \(0x)", line)
        if match:
            found[match.group(1)] = os.path.realpath(match.group(3)) if match.group(3) else None
        elif (match := re.match(r"\s*(/\S+) \(0x", line)):
            found[os.path.basename(match.group(1))] = os.path.realpath(match.group(1))
    return found


def realpaths(paths: list[str]) -> set[str]:
    return {os.path.realpath(path) for path in paths}


# --- the ELF closure ---------------------------------------------------------

def test_python_closure_holds_libc_and_the_interpreter() -> None:
    closure = elf_closure([PYTHON_BINARY])
    names = {os.path.basename(path) for path in closure}
    assert closure[0] == PYTHON_BINARY
    assert "libc.so.6" in names
    assert "ld-linux-x86-64.so.2" in names
    assert realpaths(closure[1:]) == {p for p in ldd(PYTHON_BINARY).values() if p}


@pytest.mark.skipif(SSL_EXTENSION is None, reason="python3.11 has no _ssl extension here")
def test_extension_module_closure_matches_ldd() -> None:
    assert SSL_EXTENSION is not None
    closure = elf_closure([str(SSL_EXTENSION)])
    assert {os.path.basename(p) for p in closure} >= {"libssl.so.3", "libcrypto.so.3"}
    assert realpaths(closure[1:]) == {p for p in ldd(str(SSL_EXTENSION)).values() if p}


def test_ld_so_cache_agrees_with_ldconfig() -> None:
    entries = initramfs.load_ld_so_cache()
    listed = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                            check=True).stdout
    expected = set(re.findall(r"^\s+(\S+) \(libc6[^)]*\) => (\S+)$", listed, re.MULTILINE))
    assert expected
    assert set(entries) == expected


def test_ld_so_cache_garbage_is_refused() -> None:
    with pytest.raises(InitramfsError, match="unknown format"):
        initramfs.parse_ld_so_cache(b"not a cache at all")
    data = Path(initramfs.LD_SO_CACHE).read_bytes()
    with pytest.raises(InitramfsError, match="truncated"):
        initramfs.parse_ld_so_cache(data[:initramfs.NEW_CACHE_HEADER_SIZE + 10])


def test_dynamic_string_tokens_expand() -> None:
    expand = initramfs.expand_dynamic_string
    assert expand("$ORIGIN/../lib", "/opt/app/bin", "EM_X86_64") == "/opt/app/lib"
    assert expand("${ORIGIN}/plugins", "/opt/app", "EM_X86_64") == "/opt/app/plugins"
    assert expand("/usr/$LIB/app", "/", "EM_X86_64") == "/usr/lib/x86_64-linux-gnu/app"
    assert expand("/opt/$PLATFORM", "/", "EM_X86_64") == "/opt/x86_64"


# --- RUNPATH and RPATH on programs built here --------------------------------

def compile_c(tmp: Path, out: Path, source: str, *flags: str) -> None:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is missing (make test-deps installs it)")
    src = tmp / (out.name + ".c")
    src.write_text(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-o", str(out), str(src), *flags], check=True)


@pytest.fixture
def app_tree(tmp_path: Path) -> Path:
    """app/lib/libbar.so <- app/lib/libfoo.so (no search path of its own)."""
    lib = tmp_path / "app" / "lib"
    compile_c(tmp_path, lib / "libbar.so", "int bar(void) { return 2; }\n",
              "-shared", "-fPIC", "-Wl,-soname,libbar.so")
    compile_c(tmp_path, lib / "libfoo.so", "int bar(void);\nint foo(void) { return bar(); }\n",
              "-shared", "-fPIC", "-Wl,-soname,libfoo.so", f"-L{lib}", "-lbar")
    return tmp_path / "app"


def build_program(app: Path, new_dtags: bool) -> str:
    program = app / "bin" / ("runpath" if new_dtags else "rpath")
    compile_c(app.parent, program, "int foo(void);\nint main(void) { return foo(); }\n",
              f"-L{app / 'lib'}", "-lfoo", "-Wl,-rpath,$ORIGIN/../lib",
              "-Wl,--enable-new-dtags" if new_dtags else "-Wl,--disable-new-dtags")
    return str(program)


def test_runpath_origin_is_resolved(app_tree: Path) -> None:
    program = build_program(app_tree, new_dtags=True)
    elf = initramfs.read_elf(program)
    assert elf is not None and elf.runpath == ("$ORIGIN/../lib",) and not elf.rpath
    resolver = LibraryResolver()
    assert resolver.resolve("libfoo.so", elf) == str(app_tree / "lib" / "libfoo.so")
    # RUNPATH is not inherited: libfoo's own libbar.so is not found, as ld.so says.
    assert ldd(program)["libbar.so"] is None
    with pytest.raises(InitramfsError, match="libbar.so"):
        elf_closure([program], resolver)


def test_rpath_is_inherited_by_the_loaded_libraries(app_tree: Path) -> None:
    program = build_program(app_tree, new_dtags=False)
    elf = initramfs.read_elf(program)
    assert elf is not None and elf.rpath == ("$ORIGIN/../lib",) and not elf.runpath
    closure = elf_closure([program])
    assert str(app_tree / "lib" / "libbar.so") in closure
    assert realpaths(closure[1:]) == {p for p in ldd(program).values() if p}


def test_wrong_class_library_is_skipped(app_tree: Path, tmp_path: Path) -> None:
    """A 32-bit-looking file of the same name earlier on the path is passed over."""
    program = build_program(app_tree, new_dtags=True)
    elf = initramfs.read_elf(program)
    assert elf is not None
    decoy_dir = tmp_path / "decoy"
    decoy_dir.mkdir()
    (decoy_dir / "libc.so.6").write_bytes(b"\x7fELF" + b"\x01" * 60)  # ELFCLASS32, broken
    resolver = LibraryResolver(cache=[("libc.so.6", str(decoy_dir / "libc.so.6"))],
                               system_dirs=["/lib/x86_64-linux-gnu"])
    assert resolver.resolve("libc.so.6", elf) == "/lib/x86_64-linux-gnu/libc.so.6"


# --- Python modules ----------------------------------------------------------

def test_imported_names_include_lazy_imports_but_not_type_checking() -> None:
    source = (
        "import os\n"
        "from typing import TYPE_CHECKING\n"
        "from collections import abc\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    import decimal\n"
        "else:\n"
        "    import fractions\n"
        "def later():\n"
        "    import json.decoder\n"
    )
    names = initramfs.imported_names(source)
    assert {"os", "typing", "collections", "collections.abc", "fractions",
            "json.decoder"} <= names
    assert "decimal" not in names
    assert not any(name.startswith(".") or name == "sibling" for name in names)


def test_relative_imports_resolve_against_the_package() -> None:
    source = "def later():\n    from ._textwrap import TextWrapper\n    from .. import top\n"
    assert initramfs.imported_names(source, "click") == {
        "click._textwrap", "click._textwrap.TextWrapper"}
    assert initramfs.imported_names(source, "pkg.sub") == {
        "pkg.sub._textwrap", "pkg.sub._textwrap.TextWrapper", "pkg", "pkg.top"}
    assert initramfs.source_package("/usr/lib/python3/dist-packages/click/core.py") == "click"


def run_list(*args: str) -> list[tuple[str, str]]:
    output = subprocess.run(
        ["/usr/bin/python3", "-m", "bootbus.initramfs", "list", *args],
        capture_output=True, text=True, check=True, cwd=PACKAGE_DIR.parent,
        env={**os.environ, "PYTHONPATH": str(PACKAGE_DIR.parent)}).stdout
    entries = []
    for line in output.splitlines():
        source, _, destination = line.partition("\t")
        entries.append((source, destination or source))
    return entries


def test_list_names_interpreter_stdlib_and_package() -> None:
    entries = run_list()
    sources = [source for source, _ in entries]
    destinations = [destination for _, destination in entries]
    assert sources[:2] == ["/usr/bin/python3", PYTHON_BINARY]
    for needed in ("/usr/lib/python3.11/os.py", "/usr/lib/python3.11/encodings/__init__.py",
                   "/usr/lib/python3.11/encodings/utf_8.py", "/usr/lib/python3.11/runpy.py",
                   "/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6"):
        assert needed in sources
    assert all(os.path.exists(source) for source in sources)
    assert len(set(destinations)) == len(destinations)
    package_dest = [d for d in destinations if d.startswith(initramfs.PACKAGE_DEST + "/bootbus/")]
    assert initramfs.PACKAGE_DEST + "/bootbus/__init__.py" in package_dest
    assert not any(d.endswith("bootbus/initramfs.py") for d in destinations)
    assert not any("elftools" in source for source in sources)


def test_list_follows_lazy_imports_of_third_party_packages() -> None:
    """click imports shutil only when it prints a usage error: that must work in the initramfs."""
    sources = [source for source, _ in run_list()]
    assert any("/click/" in source for source in sources), "bootbusctl's click is missing"
    assert "/usr/lib/python3.11/shutil.py" in sources
    assert any(source.endswith("/click/_textwrap.py") for source in sources)  # relative, lazy
    assert not any("/colorama/" in source for source in sources)  # Windows only


def install_like_dracut(tree: Path, source: str, destination: str) -> None:
    """Copy one entry the way dracut-install does: symlinks on the way kept, targets copied."""
    def ensure_parent(path: str) -> None:
        parent = os.path.dirname(path)
        if parent == "/" or os.path.lexists(tree / parent.lstrip("/")):
            return
        ensure_parent(parent)
        if os.path.lexists(tree / parent.lstrip("/")):
            return
        if os.path.islink(parent):
            os.symlink(os.readlink(parent), tree / parent.lstrip("/"))
            ensure_parent(os.path.realpath(parent))
            os.makedirs(tree / os.path.realpath(parent).lstrip("/"), exist_ok=True)
        else:
            os.mkdir(tree / parent.lstrip("/"))

    ensure_parent(destination)
    target = tree / destination.lstrip("/")
    if os.path.lexists(target):
        return
    if source == destination and os.path.islink(source):
        os.symlink(os.readlink(source), target)
        real = os.path.realpath(source)
        install_like_dracut(tree, real, real)
    else:
        shutil.copy2(source, target)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root (CI runs as root)")
def test_listed_files_alone_run_every_bootbus_module(tmp_path: Path) -> None:
    """The list is complete: in a tree holding only it, python3 imports all of bootbus."""
    for source, destination in run_list():
        install_like_dracut(tmp_path, source, destination)
    subprocess.run(["ldconfig", "-r", str(tmp_path)], check=True)  # as dracut does
    modules = sorted(name for name in initramfs.package_modules(PACKAGE_DIR)
                     if not name.endswith("__main__"))
    # pyudev dlopen()s libudev through ctypes.util.find_library (ldconfig -p).
    script = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
              "if 'pyudev' in sys.modules:\n    sys.modules['pyudev'].Context()\n"
              "print(sys.prefix)\n")
    result = subprocess.run([CHROOT, str(tmp_path), "/usr/bin/python3", "-c", script],
                            capture_output=True, text=True, env={"PATH": "/usr/bin"},
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "/usr"


def test_module_imports_nothing_else_of_bootbus() -> None:
    """Imports go one way: the build tool stands alone (stdlib + pyelftools)."""
    script = ("import sys; import bootbus.initramfs; "
              "print(sorted(m for m in sys.modules if m.startswith('bootbus')))")
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, cwd=PACKAGE_DIR.parent).stdout
    assert output.strip() == "['bootbus', 'bootbus.initramfs']"
