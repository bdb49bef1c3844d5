"""The click plumbing every bootbusctl command shares.

Owns: getting the group's Target back from a click context, opening the
source of answers for a command (closed when the command ends, the mode
line printed unless the output is JSON), and the --json flag.

Never: defines a command or the group (cli.py does), or decides which
source to use (sources.open_source does).
"""

from __future__ import annotations

import click

from .render import mode_line
from .sources import Source, Target, open_source


def target_of(ctx: click.Context) -> Target:
    target = ctx.find_object(Target)
    assert target is not None
    return target


def with_source(ctx: click.Context, as_json: bool) -> Source:
    source = open_source(target_of(ctx))
    ctx.call_on_close(source.close)
    if not as_json:
        mode_line(source)
    return source


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON for scripts")
