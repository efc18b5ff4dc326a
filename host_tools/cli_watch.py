"""`python -m host_tools monitor`: take back work from silent workers, repair the board, email the
supervisor."""
from __future__ import annotations

import time
from pathlib import Path

import click

from coordination.protocol.board import Board
from coordination.protocol.liveness import TAKEBACK_RULE
from coordination.secrets import redact
from host_tools.alerts import AlertError, AlertLedger, Mailer, SmtpSettings, parse_recipients
from host_tools.cli_base import HostContext, fail, LIBRARY_ERRORS, repo_option, cli
from host_tools.monitor import Monitor, PollReport, ledger_path


def _mailer(obj: HostContext, smtp_host, smtp_port, smtp_user, smtp_security, smtp_ca_file, alert_to, alert_from
            ) -> Mailer | None:
    cfg = obj.config
    host = smtp_host or cfg.smtp_host
    to = parse_recipients(alert_to or cfg.alert_to)
    if not host and not to:
        return None
    if not host:
        raise click.ClickException("--alert-to needs a mail server: pass --smtp-host H (or set WMS_SMTP_HOST).")
    try:
        return Mailer(SmtpSettings(host=host, port=smtp_port or cfg.smtp_port, user=smtp_user or cfg.smtp_user,
                                   password=cfg.smtp_password, security=smtp_security or cfg.smtp_security,
                                   sender=alert_from or cfg.alert_from, to=to, ca_file=smtp_ca_file))
    except AlertError as exc:
        fail(exc)


def _summary(report: PollReport, monitor: Monitor) -> str:
    view = monitor.board.view()
    from coordination.protocol.states import OrderState
    counts = {s: view.count(s) for s in OrderState}
    return (f"Board: {counts[OrderState.AVAILABLE]} available, {counts[OrderState.ACTIVE]} active, "
            f"{counts[OrderState.RETRY]} retry ({report.retry_ready} claimable now), "
            f"{counts[OrderState.COMPLETED]} completed, {counts[OrderState.FAILED]} failed; "
            f"{len(report.offline)} worker(s) offline.")


def show_pass(report, once: bool) -> None:
    """A monitor's or dispatcher's pass: its lines (stamped with the time in a long-running one), and an
    alert that could not be sent (a long-running one tries again)."""
    stamp = time.strftime("%H:%M:%S")
    for line in report.lines():
        click.echo(line if once else f"{stamp} {line}")
    if report.alert_error is not None and not once:
        click.echo(f"{stamp} Warning: {report.alert_error.message} Will try again next pass.", err=True)


def smtp_options(command):
    """The mail server and addresses of the supervisor's alerts (monitor, dispatch)."""
    for option in reversed([
        click.option("--smtp-host", default=None, help="Mail server for alerts (WMS_SMTP_HOST)."),
        click.option("--smtp-port", type=int, default=None, help="Its port (WMS_SMTP_PORT; 587 for STARTTLS, 465 for SSL)."),
        click.option("--smtp-user", default=None, help="Login (WMS_SMTP_USER); the password only from WMS_SMTP_PASSWORD."),
        click.option("--smtp-security", type=click.Choice(["starttls", "ssl", "none"]), default=None,
                     help="WMS_SMTP_SECURITY (default starttls)."),
        click.option("--smtp-ca-file", type=click.Path(exists=True, dir_okay=False), envvar="WMS_SMTP_CA_FILE",
                     default=None, help="Trust this CA certificate (a self-hosted mail server)."),
        click.option("--alert-to", default=None, help="Supervisor's address(es), comma-separated (WMS_ALERT_TO)."),
        click.option("--alert-from", default=None, help="Sender address (WMS_ALERT_FROM)."),
    ]):
        command = option(command)
    return command


MONITOR_HELP = f"""Take back work from silent workers, repair the board, email the supervisor.

{TAKEBACK_RULE}

Example: python -m host_tools monitor --repo-url /tmp/board.git --once --smtp-host smtp.example.org --alert-to boss@example.org
"""


@cli.command(help=MONITOR_HELP)
@repo_option
@click.option("--once", is_flag=True, help="One pass, then exit (for cron).")
@click.option("--offline-after", type=float, default=None,
              help="The least silence, in seconds, before a worker's work is taken back, whatever its lease "
                   "(default 180: three missed heartbeats; WMS_OFFLINE_AFTER).")
@click.option("--poll-seconds", type=float, default=60.0, show_default=True, help="Pause between passes.")
@smtp_options
@click.pass_obj
def monitor(obj: HostContext, repo_url, once, offline_after, poll_seconds, smtp_host, smtp_port, smtp_user,
            smtp_security, smtp_ca_file, alert_to, alert_from):
    offline_after = offline_after or obj.config.offline_after
    if offline_after <= 0 or poll_seconds <= 0:
        raise click.UsageError("--offline-after and --poll-seconds must be positive.")
    mailer = _mailer(obj, smtp_host, smtp_port, smtp_user, smtp_security, smtp_ca_file, alert_to, alert_from)
    try:
        board = obj.board(repo_url)
        mon = Monitor(board, offline_after, ledger=AlertLedger(ledger_path(board)), mailer=mailer)
    except LIBRARY_ERRORS as exc:
        fail(exc)

    def show(report: PollReport) -> None:
        show_pass(report, once)

    if once:
        try:
            report = mon.poll(time.time())
        except LIBRARY_ERRORS as exc:
            fail(exc)
        show(report)
        click.echo(_summary(report, mon))
        if mailer is None:
            click.echo("Alerts are off: set WMS_SMTP_HOST and WMS_ALERT_TO (or --smtp-host, --alert-to).")
        if report.alert_error is not None:
            raise click.ClickException(f"{report.alert_error.message} The alert(s) will be sent on the next run.")
        return
    click.echo(f"Monitoring {redact(board.repo.remote.url)} every {poll_seconds:g} s "
               f"(offline after {offline_after:g} s). Ctrl+C stops.")
    try:
        mon.run(poll_seconds, on_report=show,
                on_error=lambda exc: click.echo(f"Warning: {redact(getattr(exc, 'message', str(exc)))}", err=True))
    except KeyboardInterrupt:
        click.echo("Monitor stopped.")
