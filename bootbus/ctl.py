"""bootbusctl: inspect and steer a running bootbus from a shell.

Owns: the command line (click) and nothing else; each command turns flags
into a call through bootbus.client and prints the answer.
"""

import os
import sys
from typing import Any

import click

from .client import CallError, Client
from .daemon import default_runtime_dir

SERVICE = "org.bootbus"
PATH = "/org/bootbus/Supervisor1"
IFACE = "org.bootbus.Supervisor1"
REEXEC_TIMEOUT = 120.0  # preflight + exec + restore; the bus keeps serving meanwhile


def _default_address(runtime_dir: str | None) -> str:
    env = os.environ.get("BOOTBUS_ADDRESS")
    if env:
        return env
    return f"unix:path={runtime_dir or default_runtime_dir()}/bus"


@click.group()
@click.option("--address", default=None, help="bus address (live mode)")
@click.option("--runtime-dir", default=None, help="bootbus runtime directory")
@click.pass_context
def main(ctx: click.Context, address: str | None, runtime_dir: str | None) -> None:
    """Inspect and steer bootbus."""
    ctx.obj = {"address": address or _default_address(runtime_dir), "runtime_dir": runtime_dir}


def _client(ctx: click.Context) -> Client:
    try:
        return Client(ctx.obj["address"])
    except (OSError, ConnectionError) as exc:
        raise click.ClickException(f"cannot connect to {ctx.obj['address']}: {exc}") from None


def _call(ctx: click.Context, member: str, signature: str = "", args: tuple[Any, ...] = (),
          timeout: float | None = 10.0) -> list[Any]:
    with _client(ctx) as client:
        try:
            return client.call(SERVICE, PATH, IFACE, member, signature, args, timeout=timeout)
        except CallError as exc:
            raise click.ClickException(f"{member} failed: {exc}") from None
        except (TimeoutError, ConnectionError) as exc:
            raise click.ClickException(f"{member}: {exc}") from None


@main.command()
@click.pass_context
def reexec(ctx: click.Context) -> None:
    """Re-execute the daemon (new code), keeping every connection."""
    _call(ctx, "Reexec", timeout=REEXEC_TIMEOUT)
    click.echo("re-executed; the new image is serving")


@main.command()
@click.option("--prepare", is_flag=True, help="only open NEWROOT; complete after switch_root")
@click.argument("newroot")
@click.pass_context
def pivot(ctx: click.Context, prepare: bool, newroot: str) -> None:
    """Move the daemon into NEWROOT (after switch_root, or /run/initramfs at shutdown)."""
    _call(ctx, "Pivot", "sb", (newroot, prepare), timeout=REEXEC_TIMEOUT)
    click.echo(f"pivot into {newroot} {'prepared' if prepare else 'done'}")


if __name__ == "__main__":
    sys.exit(main())
