"""The files bootbus needs inside an initramfs, computed without running ldd.

This module owns one question: which files must an initramfs hold so that
``/usr/bin/python3 -m bootbus`` starts there. The answer is the interpreter
(its symlinks resolved), exactly the standard-library, third-party and
extension modules that bootbus imports (found by importing every bootbus
module in a child interpreter and reading its ``sys.modules``), bootbus's own
sources, and the shared-library closure of every ELF file among them: its
``PT_INTERP``, ``DT_NEEDED`` entries resolved the way glibc's ld.so does
(``DT_RPATH`` of the loader chain, ``DT_RUNPATH``, ``/etc/ld.so.cache``, the
system directories), read with pyelftools.

It is a build-time tool used by the dracut module (``dracut/99bootbus``):
``python3 -m bootbus.initramfs list`` prints one file a line, ``SOURCE`` or
``SOURCE<TAB>DESTINATION``. It must never execute ldd or ld.so, never import
the rest of bootbus (the daemon's modules are imported only in the child
interpreter, to observe them), and never write anything.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import struct
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# pyelftools ships no type information.
from elftools.common.exceptions import ELFError  # type: ignore[import]
from elftools.elf.dynamic import DynamicSection  # type: ignore[import]
from elftools.elf.elffile import ELFFile  # type: ignore[import]

PYTHON = "/usr/bin/python3"
LD_SO_CACHE = "/etc/ld.so.cache"
# Where bootbus's own sources go in the initramfs: on /usr/bin/python3's
# default sys.path, so `python3 -m bootbus` needs no PYTHONPATH there.
PACKAGE_DEST = "/usr/lib/python3/dist-packages"
PACKAGE = "bootbus"
# Modules of the package that are never installed: this build-time tool.
BUILD_ONLY_MODULES = frozenset({"bootbus.initramfs"})
# `python3 -m` runs through runpy; the codecs Python may pick at start-up
# under a C, POSIX or UTF-8 locale (the encodings package itself and its
# aliases table are imported by every start).
EXTRA_MODULES = ("runpy", "encodings", "encodings.aliases", "encodings.utf_8",
                 "encodings.ascii", "encodings.latin_1")
# Libraries loaded with dlopen(), invisible in DT_NEEDED: glibc opens
# libgcc_s for pthread_exit()/cancellation, which CPython calls when a
# thread is ended at interpreter exit.
DLOPENED_LIBRARIES = ("libgcc_s.so.1",)
# What a loaded package opens at run time without DT_NEEDED: pyudev dlopen()s
# libudev, found by ctypes.util.find_library, which runs `/sbin/ldconfig -p`
# (dracut writes the image's own ld.so.cache).
RUNTIME_NEEDS = {"pyudev": (("libudev.so.1",), ("/sbin/ldconfig",))}

# glibc's ld.so.cache formats (elf/cache.c, sysdeps/generic/dl-cache.h).
OLD_CACHE_MAGIC = b"ld.so-1.7.0"
OLD_CACHE_HEADER = struct.Struct("<11sxI")      # magic, nlibs
OLD_CACHE_ENTRY_SIZE = 12                       # flags, key, value
NEW_CACHE_MAGIC = b"glibc-ld.so.cache1.1"
NEW_CACHE_HEADER = struct.Struct("<20sII")      # magic+version, nlibs, len_strings
NEW_CACHE_HEADER_SIZE = 48                      # + flags, padding, extension offset, unused[3]
NEW_CACHE_ENTRY = struct.Struct("<iIIIQ")       # flags, key, value, osversion, hwcap
NEW_CACHE_ALIGN = 8
CACHE_FLAG_TYPE_MASK = 0x00FF
CACHE_FLAG_ELF_LIBC6 = 0x0003
# The system search path of Debian's x86-64 ld.so (`ld.so --help`), used
# after the cache; other architectures replace the triplet.
SYSTEM_LIBRARY_DIRS = ("/lib/{triplet}", "/usr/lib/{triplet}", "/lib", "/usr/lib")
MULTIARCH_TRIPLETS = {"EM_X86_64": "x86_64-linux-gnu", "EM_AARCH64": "aarch64-linux-gnu",
                      "EM_386": "i386-linux-gnu", "EM_RISCV": "riscv64-linux-gnu"}
# $PLATFORM as the kernel's AT_PLATFORM names it.
PLATFORMS = {"EM_X86_64": "x86_64", "EM_AARCH64": "aarch64", "EM_386": "i686"}
# A bound on the closure: no real program comes near it; a resolver loop would.
MAX_CLOSURE_OBJECTS = 4096
CHILD_TIMEOUT_SECONDS = 120
# Rounds of reading newly loaded third-party sources for their lazy imports.
MAX_IMPORT_ROUNDS = 8
# Lazy imports of third-party packages that are not followed: those that
# never run on Linux (click's Windows console support), and those of click's
# paths bootbusctl never takes (pager, editor, browser, atomic files) that
# would bring libcrypto (4.7 MB, through random -> hashlib) into the image.
# bootbus's own imports are always followed, whatever this list says.
NOT_FOLLOWED_MODULES = frozenset({"colorama", "msvcrt", "_winapi", "winreg", "nt",
                                  "_winconsole", "wintypes",
                                  "random", "tempfile", "webbrowser", "hashlib", "uuid"})


class InitramfsError(Exception):
    """A file list cannot be computed (unresolvable library, failing import)."""


# --- ELF files ---------------------------------------------------------------

@dataclass(frozen=True)
class ElfObject:
    """What the dynamic loader reads from one ELF file."""

    path: str
    elf_class: int
    machine: str
    interpreter: str | None
    soname: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


def read_elf(path: str) -> ElfObject | None:
    """Read the dynamic section of ``path``; None when it is no ELF file."""
    try:
        with open(path, "rb") as stream:
            if stream.read(4) != b"\x7fELF":
                return None
            stream.seek(0)
            elf = ELFFile(stream)
            interpreter = None
            for segment in elf.iter_segments():
                if segment["p_type"] == "PT_INTERP":
                    interpreter = segment.get_interp_name()
            needed: list[str] = []
            rpath: list[str] = []
            runpath: list[str] = []
            soname = None
            for section in elf.iter_sections():
                if not isinstance(section, DynamicSection):
                    continue
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif tag.entry.d_tag == "DT_RPATH":
                        rpath.extend(_split_search_path(tag.rpath))
                    elif tag.entry.d_tag == "DT_RUNPATH":
                        runpath.extend(_split_search_path(tag.runpath))
                    elif tag.entry.d_tag == "DT_SONAME":
                        soname = tag.soname
            return ElfObject(path, elf.elfclass, elf["e_machine"], interpreter, soname,
                             tuple(needed), tuple(rpath), tuple(runpath))
    except ELFError as error:
        raise InitramfsError(f"{path}: not a readable ELF file: {error}") from error


def _split_search_path(value: str) -> list[str]:
    return [entry for entry in value.split(":") if entry]


def expand_dynamic_string(entry: str, origin: str, machine: str) -> str:
    """Expand ``$ORIGIN``, ``$LIB`` and ``$PLATFORM`` (also ``${...}``) in a search path entry.

    ``origin`` is the directory of the object that holds the entry.
    """
    triplet = MULTIARCH_TRIPLETS.get(machine, "")
    values = {"ORIGIN": origin,
              "LIB": f"lib/{triplet}" if triplet else "lib",
              "PLATFORM": PLATFORMS.get(machine, "")}
    for name, value in values.items():
        entry = entry.replace("${" + name + "}", value).replace("$" + name, value)
    return os.path.normpath(entry) if entry else entry


# --- /etc/ld.so.cache ----------------------------------------------------------

def parse_ld_so_cache(data: bytes) -> list[tuple[str, str]]:
    """Return the (soname, path) entries of an ld.so.cache for glibc's libc6 ABI, in order.

    Reads the new format, alone or after the old one, as glibc does; string
    offsets count from the start of the file.
    """
    offset = 0
    if data.startswith(OLD_CACHE_MAGIC):
        _, old_count = OLD_CACHE_HEADER.unpack_from(data, 0)
        offset = OLD_CACHE_HEADER.size + old_count * OLD_CACHE_ENTRY_SIZE
        offset = (offset + NEW_CACHE_ALIGN - 1) & ~(NEW_CACHE_ALIGN - 1)
    if data[offset:offset + len(NEW_CACHE_MAGIC)] != NEW_CACHE_MAGIC:
        raise InitramfsError("ld.so.cache: unknown format (no glibc-ld.so.cache1.1 header)")
    _, count, _ = NEW_CACHE_HEADER.unpack_from(data, offset)
    entries_at = offset + NEW_CACHE_HEADER_SIZE
    if entries_at + count * NEW_CACHE_ENTRY.size > len(data):
        raise InitramfsError("ld.so.cache: truncated entry table")
    entries = []
    for index in range(count):
        flags, key, value, _, _ = NEW_CACHE_ENTRY.unpack_from(
            data, entries_at + index * NEW_CACHE_ENTRY.size)
        if flags & CACHE_FLAG_TYPE_MASK != CACHE_FLAG_ELF_LIBC6:
            continue
        entries.append((_c_string(data, key), _c_string(data, value)))
    return entries


def _c_string(data: bytes, at: int) -> str:
    end = data.find(b"\0", at)
    if at >= len(data) or end < 0:
        raise InitramfsError(f"ld.so.cache: string offset {at} out of range")
    return data[at:end].decode("utf-8", "surrogateescape")


def load_ld_so_cache(path: str = LD_SO_CACHE) -> list[tuple[str, str]]:
    """The entries of the system's cache, or none when there is no cache."""
    try:
        return parse_ld_so_cache(Path(path).read_bytes())
    except FileNotFoundError:
        return []


# --- the loader's search -----------------------------------------------------

@dataclass
class LibraryResolver:
    """Finds a DT_NEEDED name the way glibc's ld.so does (without LD_LIBRARY_PATH)."""

    cache: Sequence[tuple[str, str]] = field(default_factory=load_ld_so_cache)
    system_dirs: Sequence[str] | None = None

    def resolve(self, name: str, requester: ElfObject,
                loader_chain: Sequence[ElfObject] = ()) -> str | None:
        """The path ld.so would load for ``name`` needed by ``requester``.

        ``loader_chain`` lists the objects that (transitively) loaded the
        requester, nearest first, ending with the executable: their DT_RPATH
        applies while the requester has no DT_RUNPATH.
        """
        if "/" in name:
            path = expand_dynamic_string(name, os.path.dirname(requester.path), requester.machine)
            return path if self._compatible(path, requester) else None
        for directory in self._search_dirs(requester, loader_chain):
            candidate = os.path.join(directory, name)
            if self._compatible(candidate, requester):
                return candidate
        for soname, path in self.cache:
            if soname == name and self._compatible(path, requester):
                return path
        for directory in self._system_dirs(requester):
            candidate = os.path.join(directory, name)
            if self._compatible(candidate, requester):
                return candidate
        return None

    def _search_dirs(self, requester: ElfObject,
                     loader_chain: Sequence[ElfObject]) -> Iterator[str]:
        if not requester.runpath:
            for holder in (requester, *loader_chain):
                if holder.runpath:
                    continue
                origin = os.path.dirname(holder.path)
                for entry in holder.rpath:
                    yield expand_dynamic_string(entry, origin, holder.machine)
        origin = os.path.dirname(requester.path)
        for entry in requester.runpath:
            yield expand_dynamic_string(entry, origin, requester.machine)

    def _system_dirs(self, requester: ElfObject) -> Iterable[str]:
        if self.system_dirs is not None:
            return self.system_dirs
        triplet = MULTIARCH_TRIPLETS.get(requester.machine, "")
        dirs = [entry.format(triplet=triplet) for entry in SYSTEM_LIBRARY_DIRS]
        return [entry for entry in dirs if not entry.endswith("/")]

    @staticmethod
    def _compatible(path: str, requester: ElfObject) -> bool:
        """ld.so skips files of another class or machine (a 32-bit lib in the way)."""
        if not os.path.isfile(path):
            return False
        try:
            candidate = read_elf(path)
        except InitramfsError:
            return False
        return (candidate is not None and candidate.elf_class == requester.elf_class
                and candidate.machine == requester.machine)


def elf_closure(roots: Sequence[str], resolver: LibraryResolver | None = None,
                dlopened: Sequence[str] = ()) -> list[str]:
    """Every file the loader opens to run ``roots``, roots first, in load order.

    ``roots`` are an executable and objects it dlopen()s (extension modules),
    loaded in that order into one process: a library already loaded under
    its name is not searched again. ``dlopened`` names libraries the
    executable opens by soname. Non-ELF roots (scripts) are skipped.
    """
    resolver = resolver or LibraryResolver()
    files: list[str] = []
    loaded: dict[str, str] = {}
    executable: ElfObject | None = None
    for root in roots:
        obj = read_elf(root)
        if obj is None:
            continue
        executable = executable or obj
        chain = () if obj is executable else (executable,)
        _load(obj, chain, resolver, files, loaded)
    if executable is not None:
        for name in dlopened:
            path = resolver.resolve(name, executable)
            if path is None:
                raise InitramfsError(f"{name} (dlopen()ed by glibc) not found")
            obj = read_elf(path)
            if obj is not None and name not in loaded:
                loaded[name] = path
                _load(obj, (executable,), resolver, files, loaded)
    return files


def _load(obj: ElfObject, chain: tuple[ElfObject, ...], resolver: LibraryResolver,
          files: list[str], loaded: dict[str, str]) -> None:
    """Breadth-first over ``obj``'s dependencies, as ld.so maps them."""
    queue: list[tuple[ElfObject, tuple[ElfObject, ...]]] = [(obj, chain)]
    _add(files, obj.path)
    if obj.interpreter:
        _add(files, obj.interpreter)
        interpreter = read_elf(obj.interpreter)
        if interpreter is None:
            raise InitramfsError(f"{obj.interpreter} (interpreter of {obj.path}) is not ELF")
        # ld.so is loaded first, under its soname: libc's DT_NEEDED on it is met.
        loaded.setdefault(interpreter.soname or os.path.basename(obj.interpreter),
                          obj.interpreter)
    while queue:
        current, current_chain = queue.pop(0)
        for name in current.needed:
            if name in loaded:
                continue
            path = resolver.resolve(name, current, current_chain)
            if path is None:
                raise InitramfsError(f"{name} (needed by {current.path}) not found")
            dependency = read_elf(path)
            if dependency is None:
                raise InitramfsError(f"{path} (needed by {current.path}) is not ELF")
            loaded[name] = path
            if dependency.soname:
                loaded.setdefault(dependency.soname, path)
            _add(files, path)
            if len(files) > MAX_CLOSURE_OBJECTS:
                raise InitramfsError(f"closure exceeds {MAX_CLOSURE_OBJECTS} objects")
            queue.append((dependency, (current, *current_chain)))


def _add(files: list[str], path: str) -> None:
    if path not in files:
        files.append(path)


# --- Python modules ----------------------------------------------------------

def package_modules(package_dir: Path) -> dict[str, Path]:
    """Module name -> source file of every module of the package, build-only ones excluded."""
    modules: dict[str, Path] = {}
    base = package_dir.parent
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = path.relative_to(base).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if name not in BUILD_ONLY_MODULES:
            modules[name] = path
    return modules


def imported_names(source: str, package: str | None = None) -> set[str]:
    """Absolute module names an import statement anywhere in ``source`` names.

    Imports inside functions count (lazy imports run later, in the
    initramfs); imports under ``if TYPE_CHECKING:`` do not. For
    ``from a import b`` both ``a`` and ``a.b`` are named: ``b`` may be a
    submodule. Relative imports are resolved against ``package`` (the
    package the source belongs to) and left out without one.
    """
    names: set[str] = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute_module(node, package)
            if module is None:
                continue
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names if alias.name != "*")
    return {name for name in names if name}


def _absolute_module(node: ast.ImportFrom, package: str | None) -> str | None:
    if node.level == 0:
        return node.module
    if not package:
        return None
    parts = package.split(".")
    if node.level - 1 >= len(parts):
        return None
    base = ".".join(parts[:len(parts) - (node.level - 1)])
    return f"{base}.{node.module}" if node.module else base


def source_package(path: str) -> str | None:
    """The package a module file of a site directory belongs to ('' for a top-level module)."""
    parts = Path(path).parts
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] in ("dist-packages", "site-packages"):
            return ".".join(parts[index + 1:-1])
    return None


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (n for child in node.orelse for n in (child, *_runtime_nodes(child)))
            continue
        yield node
        yield from _runtime_nodes(node)


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


# The child imports what it is told and prints every loaded module's file.
# It uses only builtins, so it adds nothing to what it observes.
_CHILD = """\
import sys
required, optional = sys.argv[1].split(), sys.argv[2].split()
for name in required:
    __import__(name)
for name in optional:
    try:
        __import__(name)
    except Exception:  # a platform's module refusing to import (click's _winconsole)
        pass
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path:
        print(path)
"""


def imported_module_files(package_dir: Path, python: str = PYTHON,
                          also: Sequence[str] = ()) -> list[str]:
    """Files of the modules ``python`` loads to import every module of the package.

    Everything bootbus imports, directly or lazily, is imported in a child
    interpreter started the way the daemon starts (site included); its
    ``sys.modules`` is the answer, bootbus's own modules excluded. ``also``
    names more modules that must import (programs shipped beside bootbus).
    Lazy imports count in bootbus and in the third-party packages it loads
    (click imports shutil only to print an error): their sources are read
    too, round after round, until no new name appears. The standard
    library's own lazy imports are not followed (that would be most of it).
    """
    modules = package_modules(package_dir)
    wanted: set[str] = set(EXTRA_MODULES)
    for path in modules.values():
        wanted |= imported_names(path.read_text(encoding="utf-8"))
    required = [name for name in modules if not name.endswith(".__main__")] + list(also)
    package_root = str(package_dir.resolve())
    scanned: set[str] = set()
    for _ in range(MAX_IMPORT_ROUNDS):
        optional = sorted(name for name in wanted
                          if name.split(".")[0] != PACKAGE or name in modules)
        files = [path for path in _loaded_files(python, package_dir, required, optional)
                 if path != package_root and not path.startswith(package_root + os.sep)]
        third_party = [path for path in files if path.endswith(".py") and path not in scanned
                       and _is_third_party(path)]
        if not third_party:
            return sorted(set(files))
        for source in third_party:
            scanned.add(source)
            text = Path(source).read_text(encoding="utf-8")
            wanted |= {name for name in imported_names(text, source_package(source))
                       if NOT_FOLLOWED_MODULES.isdisjoint(name.split("."))}
    raise InitramfsError(f"imports still growing after {MAX_IMPORT_ROUNDS} rounds")


def _is_third_party(path: str) -> bool:
    return any(part in ("dist-packages", "site-packages") for part in Path(path).parts)


def _loaded_files(python: str, package_dir: Path, required: Sequence[str],
                  optional: Sequence[str]) -> list[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(PYTHONPATH=str(package_dir.parent), PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run(
        [python, "-c", _CHILD, " ".join(required), " ".join(optional)],
        capture_output=True, text=True, env=env, cwd="/", timeout=CHILD_TIMEOUT_SECONDS,
        check=False)
    if result.returncode != 0:
        raise InitramfsError(f"importing {PACKAGE} with {python} failed:\n{result.stderr}")
    return [os.path.abspath(line) for line in result.stdout.splitlines()]


def with_bytecode(sources: Iterable[str]) -> list[str]:
    """Each .py file followed by its cached bytecode, where the system compiled it."""
    files = []
    for source in sources:
        files.append(source)
        if source.endswith(".py"):
            cached = importlib.util.cache_from_source(source)
            if os.path.isfile(cached):
                files.append(cached)
    return files


# --- the whole list ----------------------------------------------------------

@dataclass(frozen=True)
class InstallFile:
    """One file for the initramfs: where it is now and where it goes."""

    source: str
    destination: str

    def line(self) -> str:
        if self.source == self.destination:
            return self.source
        return f"{self.source}\t{self.destination}"


def interpreter_paths(python: str) -> list[str]:
    """``python`` and every link on the way to the real binary, the binary last."""
    paths = [os.path.abspath(python)]
    current = paths[0]
    for _ in range(40):  # the kernel's own limit on nested symlinks
        if not os.path.islink(current):
            break
        current = os.path.normpath(os.path.join(os.path.dirname(current),
                                                os.readlink(current)))
        paths.append(current)
    return paths


def initramfs_files(package_dir: Path, python: str = PYTHON,
                    package_dest: str = PACKAGE_DEST, bytecode: bool = True,
                    resolver: LibraryResolver | None = None,
                    also: Sequence[str] = ()) -> list[InstallFile]:
    """Everything ``python -m bootbus`` needs in an initramfs, each file once."""
    interpreter = interpreter_paths(python)
    modules = imported_module_files(package_dir, python, also)
    if bytecode:
        modules = with_bytecode(modules)
    extensions = [path for path in modules if path.endswith(".so")]
    dlopened: list[str] = list(DLOPENED_LIBRARIES)
    programs: list[str] = []
    for package, (libraries_needed, programs_needed) in RUNTIME_NEEDS.items():
        if any(f"/{package}/" in path for path in modules):
            dlopened += libraries_needed
            programs += programs_needed
    libraries = elf_closure([interpreter[-1], *extensions], resolver, dlopened)
    for program in programs:
        libraries += elf_closure([program], resolver)  # a process of its own
    files = [InstallFile(path, path) for path in (*interpreter, *libraries, *modules)]
    destination = os.path.join(package_dest, package_dir.name)
    for path in package_modules(package_dir).values():
        relative = path.relative_to(package_dir)
        files.append(InstallFile(str(path), os.path.join(destination, str(relative))))
    unique: dict[str, InstallFile] = {}
    for entry in files:
        if any(character.isspace() for character in entry.source + entry.destination):
            raise InitramfsError(f"{entry.source!r}: whitespace in a path breaks the list format")
        unique.setdefault(entry.destination, entry)
    return list(unique.values())


def total_size(files: Iterable[InstallFile]) -> int:
    """Bytes of the regular files (symlinks followed once each)."""
    seen = set()
    total = 0
    for entry in files:
        real = os.path.realpath(entry.source)
        if real not in seen:
            seen.add(real)
            total += os.path.getsize(real)
    return total


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bootbus.initramfs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="files for the initramfs, SOURCE[<TAB>DEST]")
    listing.add_argument("--python", default=PYTHON)
    listing.add_argument("--package-dest", default=PACKAGE_DEST,
                         help="directory that receives the bootbus package")
    listing.add_argument("--no-bytecode", action="store_true",
                         help="leave out the system's compiled __pycache__ files")
    listing.add_argument("--size", action="store_true", help="print the total size on stderr")
    listing.add_argument("--with-module", action="append", default=[], metavar="MODULE",
                         help="also a module (and what it imports) that must run there")
    closure = commands.add_parser("closure", help="shared-library closure of ELF files")
    closure.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "closure":
            for path in elf_closure(args.files):
                print(path)
            return 0
        package_dir = Path(__file__).resolve().parent
        files = initramfs_files(package_dir, args.python, args.package_dest,
                                bytecode=not args.no_bytecode, also=args.with_module)
        for entry in files:
            print(entry.line())
        if args.size:
            print(f"{len(files)} files, {total_size(files)} bytes", file=sys.stderr)
        return 0
    except InitramfsError as error:
        print(f"bootbus.initramfs: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
