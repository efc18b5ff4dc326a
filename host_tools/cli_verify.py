"""`set-verify` and the `--verify` option of `publish`: results checked by redundancy
(`coordination.protocol.verify`, `host_tools.verification`)."""
from __future__ import annotations

import click

from host_tools import admin
from host_tools.cli_base import HostContext, LIBRARY_ERRORS, cli, fail, repo_option

verify_option = click.option(
    "--verify", type=click.FloatRange(0.0, 1.0), default=None, metavar="FRACTION",
    help="Share of these chapters, drawn at random, read by two different workers and accepted when their "
         "texts agree (default: the board's, set by set-verify; 0.05 on a new board).")


@cli.command("set-verify")
@repo_option
@click.option("--verify", "fraction", type=click.FloatRange(0.0, 1.0), default=None, metavar="FRACTION",
              help="Share of chapters published from now on that are read twice.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None, metavar="CER",
              help="Two readings agree when the character error rate between them is at most this.")
@click.pass_obj
def set_verify(obj: HostContext, repo_url, fraction, threshold):
    """Change how much of a live board is verified, and when two readings agree.

    Example: python -m host_tools set-verify --repo-url /tmp/board.git --verify 0.2 --threshold 0.05
    """
    if fraction is None and threshold is None:
        raise click.UsageError("Give --verify FRACTION, --threshold CER, or both.")
    try:
        before, after = admin.set_verify(obj.board(repo_url), fraction, threshold)
    except LIBRARY_ERRORS as exc:
        fail(exc)
    if before == after:
        click.echo(f"Verification already {after.fraction:g} of new chapters, agreement at CER <= "
                   f"{after.threshold:g}; nothing to do.")
    else:
        click.echo(f"Verification: {before.fraction:g} -> {after.fraction:g} of new chapters; agreement at CER <= "
                   f"{before.threshold:g} -> {after.threshold:g}.")
