"""bootbusctl's command group: the global flags, the epilog, and the commands.

Owns: the group (--address, --runtime-dir, --timeout, -h), its help epilog
(the modes and the exit status table), and which commands it has; each
command lives in the module of its family.

Never: does any work of a command; it turns the global flags into a
sources.Target and hands over.
"""

from __future__ import annotations

import click

from . import actions, devices, inspection, log, monitor
from .sources import DEFAULT_TIMEOUT, Target

EPILOG = """\b
Modes: with --address the live bus is asked; with --runtime-dir the files
bootbus keeps there (summary.json, steplog.jsonl) are read, which works with
the daemon dead or wedged; with both or neither the live bus is tried first
(at RUNTIME_DIR/bus) and the files are read if it does not answer. Tables
name the mode used on stderr; JSON output has a "mode" key. `log` always
reads the files. The runtime directory defaults to the directory of a
unix:path= address holding bootbus files, else /run/bootbus as root
($XDG_RUNTIME_DIR/bootbus otherwise).

\b
Exit status:
  0  success
  1  the bus could not be reached or a call failed
  2  usage error
  3  offline data unavailable (no live bus and no summary or step log)
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--address", default=None, envvar="BOOTBUS_ADDRESS",
              help="bus address: live mode (env BOOTBUS_ADDRESS)")
@click.option("--runtime-dir", default=None, type=click.Path(file_okay=False),
              help="bootbus runtime directory: offline mode")
@click.option("--timeout", default=DEFAULT_TIMEOUT, show_default=True, type=click.FloatRange(0.1),
              help="seconds to wait for the bus")
@click.pass_context
def main(ctx: click.Context, address: str | None, runtime_dir: str | None,
         timeout: float) -> None:
    """Inspect and steer bootbus, live or from what it left in its runtime directory."""
    ctx.obj = Target(address or None, runtime_dir or None, timeout)


for _command in (inspection.status, inspection.names, inspection.connections,
                 inspection.matches, inspection.dump_state, log.log, monitor.monitor,
                 actions.call, actions.emit, actions.reexec, actions.pivot,
                 devices.devices, devices.wait_device, devices.wait_root):
    main.add_command(_command)
