"""monitor: take back work of silent workers, repair the board, email the supervisor once per incident."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from coordination.api import GitHubWorkBridge
from coordination.protocol.records import RESULT_FILE, dumps
from coordination.protocol.refs import CLAIMS_PREFIX, HEARTBEATS_PREFIX, result_ref
from coordination.protocol.git import RefUpdate
from coordination.protocol.states import OrderState, state_path
from host_tools import admin
from host_tools.alerts import AlertLedger, Mailer, SmtpSettings
from host_tools.monitor import Monitor
from tests.helpers import PY, ROOT, git_out, host, ids_by_state, read_board_json, start_worker, wait_for
from tests.servers import free_port
from tests.test_host_support import SmtpSink, invoke, self_signed_cert


def smtp_args(port, to="boss@example.org"):
    return ["--smtp-host", "127.0.0.1", "--smtp-port", str(port), "--smtp-security", "none", "--alert-to", to]


def test_worker_killed_holding_a_claim_is_taken_back_and_the_supervisor_emailed(board, tmp_path):
    url = str(board)
    # the worker's lease is sized from its order (8 s: about 16 s); the monitor times it on its own clock
    host("publish", "--repo-url", url, "--simulate", "1", "--seconds", "8", "--prefix", "long")
    worker = start_worker(url, tmp_path / "w", log=tmp_path / "w.log")
    try:
        wait_for(lambda: ids_by_state(board)["active"] == ["long-00001"], timeout=30, what="the claim on main")
    finally:
        worker.kill()  # kill -9: no goodbye heartbeat, no release
        worker.wait(timeout=10)
    holder = read_board_json(board, "active_work/long-00001.json")["worker_id"]
    with SmtpSink() as smtp:
        args = ["monitor", "--repo-url", url, "--once", "--offline-after", "3", *smtp_args(smtp.port)]
        result = wait_for(lambda: (r := invoke(*args)).stdout.startswith("Took back") and r, timeout=45,
                          what="the take-back")
        assert result.exit_code == 0
        lines = result.stdout.splitlines()
        assert re.fullmatch(rf"Took back long-00001 from {holder} \(silent \d+ s\)", lines[0])
        assert lines[1:] == [f"Emailed: [wms] worker {holder} went offline",
                             "Board: 0 available, 0 active, 1 retry (1 claimable now), 0 completed, 0 failed; "
                             "1 worker(s) offline."]
        mails = smtp.wait(1)
        assert len(mails) == 1
        assert mails[0]["Subject"] == f"[wms] worker {holder} went offline"
        assert mails[0]["To"] == "boss@example.org" and smtp.envelopes[0][1] == ["boss@example.org"]
        body = mails[0].get_payload(decode=True).decode()
        assert "Taken back for other workers: long-00001." in body and "did not say it was stopping" in body
        # the order waits in retry_queue, the lapse counted as a failed attempt
        record = read_board_json(board, "retry_queue/long-00001.json")
        assert record["attempts"] == 1 and "lease lapsed" in record["errors"][0]["error"]
        assert ids_by_state(board)["active"] == []
        # a second run (cron) sends nothing new
        again = invoke(*args)
        assert again.stdout == ("Board: 0 available, 0 active, 1 retry (1 claimable now), 0 completed, 0 failed; "
                                "1 worker(s) offline.\n")
        assert len(smtp.messages) == 1  # the sink records a message before it answers: nothing more came


def _heartbeat_info(bare, worker_id):
    ref = f"{HEARTBEATS_PREFIX}{worker_id}"
    sha = git_out(bare, "rev-parse", "--verify", "-q", ref).strip()
    return sha, json.loads(git_out(bare, "log", "-1", "--format=%B", sha))


def test_where_pushes_are_cheap_a_killed_worker_is_taken_back_and_emailed_within_three_heartbeats(tmp_path):
    """A self-hosted board (a budget of 600 pushes a minute): a worker with --heartbeat-seconds 1 renews
    its lease every second and declares three heartbeats (3 s), though its order takes 120 s. Killed,
    its order is back on offer, and the supervisor emailed, at the first monitor pass that has seen it
    silent for 3 s (`--offline-after 3`): the issue's passes 5 s and 9 s after the kill."""
    from tests.helpers import make_bare
    bare = make_bare(tmp_path / "board.git")
    url = str(bare)
    host("init", "--repo-url", url, "--push-budget", "600")
    host("publish", "--repo-url", url, "--simulate", "1", "--seconds", "120", "--prefix", "long")
    env = {k: v for k, v in os.environ.items() if k != "ENVIRONMENT" and not k.startswith("WMS_")}  # the defaults
    log = tmp_path / "w.log"
    worker = subprocess.Popen([PY, str(ROOT / "wms_worker_processor.py"), "--repo-url", url, "--heartbeat-seconds",
                               "1", "--workdir", str(tmp_path / "w"), "--worker-id", "volunteer-1"], cwd=tmp_path,
                              stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: "✅ Claimed work: long-00001" in log.read_text(encoding="utf-8"), timeout=60,
                 what="the claim")
        # its first heartbeat, with the claim, comes before it has seen the fleet: stretched over the 120 s;
        # its first renewal, a second later, has looked at the board and declares three heartbeats
        first, info = wait_for(lambda: (hb := _heartbeat_info(bare, "volunteer-1")) and
                               hb[1]["lease_basis"] == "heartbeats" and hb, timeout=30, what="a 3-s lease")
        assert info["holding"] == [["long-00001", 1]] and info["lease_seconds"] == 3.0
        # the lease is renewed every heartbeat while the order runs: two more renewals, about a second apart
        seen = {first}
        wait_for(lambda: seen.add(_heartbeat_info(bare, "volunteer-1")[0]) or len(seen) >= 3, timeout=15,
                 interval=0.1, what="two renewals")
        # status shows the lease and when the orders would be taken back (from a host folder of its own: the
        # monitor below starts watching fresh, as in the scenario)
        status = json.loads(invoke("--workdir", str(tmp_path / "status-host"), "status", "--repo-url", url, "--json",
                                   "--offline-after", "3").stdout)
        live = status["workers"][0]
        assert (live["lease_seconds"], live["lease_basis"], live["holding"]) == (3.0, "heartbeats", ["long-00001"])
        assert 0 < live["takes_back_at"] - time.time() <= 3.5
    finally:
        worker.kill()  # kill -9: no goodbye, no release
        worker.wait(timeout=10)
    killed = time.monotonic()
    with SmtpSink() as smtp:
        args = ["monitor", "--repo-url", url, "--once", "--offline-after", "3", *smtp_args(smtp.port)]
        time.sleep(max(0.0, killed + 5 - time.monotonic()))  # the scenario's timing: passes 5 s and 9 s after
        one = invoke(*args)
        assert one.stdout.startswith("Watching 1 worker(s); silent ones are judged from the next pass")
        assert ids_by_state(bare)["active"] == ["long-00001"] and not smtp.messages
        time.sleep(max(0.0, killed + 9 - time.monotonic()))
        two = invoke(*args)
        lines = two.stdout.splitlines()
        assert re.fullmatch(r"Took back long-00001 from volunteer-1 \(silent \d+ s\)", lines[0]), two.stdout
        assert lines[1] == "Emailed: [wms] worker volunteer-1 went offline"
        assert smtp.wait(1)[0]["Subject"] == "[wms] worker volunteer-1 went offline"
    assert ids_by_state(bare)["retry"] == ["long-00001"]  # back on offer (after the retry back-off)
    assert "lease lapsed" in read_board_json(bare, "retry_queue/long-00001.json")["errors"][0]["error"]


def _fail_for_good(board_path, tmp_path, n=1):
    admin_board = admin.open_board(str(board_path), tmp_path / "pub")
    admin.publish(admin_board, admin.simulate_orders(n, 0, prefix="bad"))
    bridge = GitHubWorkBridge(repo_url=str(board_path), workdir=tmp_path / "bridge")
    for _ in range(n):
        order = bridge.claim_available_work("w1")
        bridge.submit_failed_work(order, "page 3 is not an image", permanent=True)
    assert len(ids_by_state(board_path)["failed"]) == n


def test_smtp_down_gives_a_clear_message_and_the_alert_is_sent_on_the_next_run(board, tmp_path):
    _fail_for_good(board, tmp_path)
    port = free_port()  # nothing listens here yet
    args = ["monitor", "--repo-url", str(board), "--once", *smtp_args(port)]
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: Cannot reach the mail server 127.0.0.1:{port}: Connection refused. Check "
                             "WMS_SMTP_HOST and WMS_SMTP_PORT. The alert(s) will be sent on the next run.\n")
    assert "Traceback" not in result.output
    smtp = SmtpSink()
    smtp.port = port  # the mail server comes up where the monitor looked before
    with smtp:
        result = invoke(*args)
        assert result.exit_code == 0
        assert result.stdout.splitlines()[0] == "Emailed: [wms] order bad-00001 failed for good"
        mails = smtp.wait(1)
        body = mails[0].get_payload(decode=True).decode()
        assert "failed 1 time(s) and will not be tried again" in body and "page 3 is not an image" in body
        again = invoke(*args)
        assert again.exit_code == 0 and "Emailed" not in again.stdout
        assert len(smtp.messages) == 1  # the sink records a message before it answers: nothing more came


def test_many_new_incidents_come_in_one_digest(board, tmp_path):
    _fail_for_good(board, tmp_path, n=6)
    with SmtpSink() as smtp:
        result = invoke("monitor", "--repo-url", str(board), "--once", *smtp_args(smtp.port))
        assert result.exit_code == 0
        mails = smtp.wait(1)
        assert [m["Subject"] for m in mails] == ["[wms] 6 new incidents on the board"]
        body = mails[0].get_payload(decode=True).decode()
        assert all(f"bad-0000{i}" in body for i in range(1, 7))


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # implicit TLS: the server can't tell
@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_and_login_with_settings_from_dotenv(board, tmp_path, security):
    _fail_for_good(board, tmp_path)
    cert, key = self_signed_cert(tmp_path)
    password = "mail-pass-42"
    sink = SmtpSink(tls=(cert, key), users={"monitor": password})
    if security == "ssl":
        sink = SslSmtpSink(cert, key, {"monitor": password})
    with sink:
        (tmp_path / ".env").write_text(
            f"WMS_SMTP_HOST=127.0.0.1\nWMS_SMTP_PORT={sink.port}\nWMS_SMTP_USER=monitor\n"
            f"WMS_SMTP_PASSWORD={password}\nWMS_SMTP_SECURITY={security}\nWMS_ALERT_FROM=wms@example.org\n"
            f"WMS_ALERT_TO=a@example.org, b@example.org\nWMS_SMTP_CA_FILE={cert}\n")
        env = {k: v for k, v in os.environ.items()}
        proc = subprocess.run([PY, "-m", "host_tools", "monitor", "--repo-url", str(board), "--once"],
                              cwd=tmp_path, env=dict(env, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "Emailed: [wms] order bad-00001 failed for good" in proc.stdout
        assert password not in proc.stdout + proc.stderr
        mails = sink.wait(1)
        assert sink.logins == ["monitor"]
        assert mails[0]["From"] == "wms@example.org" and sink.envelopes[0][1] == ["a@example.org", "b@example.org"]
        # a wrong password is a plain message, and the password is not in it
        (tmp_path / ".env").write_text((tmp_path / ".env").read_text().replace(password, "wrong-pass-99"))
        (ledger,) = (tmp_path / "host").glob("*/monitor-alerts.json")
        ledger.unlink()  # forget the alert so it is sent again
        proc = subprocess.run([PY, "-m", "host_tools", "monitor", "--repo-url", str(board), "--once"],
                              cwd=tmp_path, env=dict(env, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 1
        assert "refused the login for 'monitor'" in proc.stderr and "Check WMS_SMTP_USER and WMS_SMTP_PASSWORD" in proc.stderr
        assert "wrong-pass-99" not in proc.stderr + proc.stdout


class SslSmtpSink(SmtpSink):
    """SMTP over implicit TLS (port 465 style)."""

    def __init__(self, cert, key, users):
        super().__init__(users=users)
        self.cert, self.key = cert, key

    def __enter__(self):
        import ssl
        from aiosmtpd.controller import Controller
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, ssl_context=ctx,
                                     authenticator=self._auth, auth_required=True, auth_require_tls=False)
        self.controller.start()
        return self


def test_alert_settings_errors(board):
    result = invoke("monitor", "--repo-url", str(board), "--once", "--alert-to", "boss@example.org")
    assert (result.exit_code, result.stderr) == (
        1, "Error: --alert-to needs a mail server: pass --smtp-host H (or set WMS_SMTP_HOST).\n")
    result = invoke("monitor", "--repo-url", str(board), "--once", "--smtp-host", "127.0.0.1")
    assert (result.exit_code, result.stderr) == (
        1, "Error: No alert recipient: set WMS_ALERT_TO in .env or pass --alert-to ADDR.\n")
    result = invoke("monitor", "--repo-url", str(board), "--once")
    assert result.exit_code == 0
    assert result.stdout.endswith("Alerts are off: set WMS_SMTP_HOST and WMS_ALERT_TO (or --smtp-host, --alert-to).\n")


# ------------------------------------------------------------------ time as a parameter (library level)
def _heartbeat(board_obj, worker, sent_at, holding=(), state="running"):
    info = {"kind": "heartbeat", "worker_id": worker, "sent_at": sent_at, "state": state,
            "holding": [list(h) for h in holding], "completed": 0}
    ref = f"{HEARTBEATS_PREFIX}{worker}"
    board_obj.repo.push([RefUpdate(ref, board_obj.ref_commit(info, when=sent_at), None)])


def test_lease_lapses_by_the_monitors_now_not_by_the_wall_clock(board, tmp_path):
    b = admin.open_board(str(board), tmp_path / "mon")
    admin.publish(b, admin.simulate_orders(1, 0, prefix="t"))
    bridge = GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "bridge")
    order = bridge.claim_available_work("ghost")
    t0 = time.time()
    _heartbeat(b, "ghost", t0, holding=[("t-00001", order["seq"])])
    mon = Monitor(b, offline_after=180, ledger=AlertLedger(tmp_path / "ledger.json"))
    first = mon.poll(t0 + 10)
    assert first.taken_back == [] and first.offline == []
    assert ids_by_state(board)["active"] == ["t-00001"]
    later = mon.poll(t0 + 200)
    assert [(x.work_id, x.holder) for x in later.taken_back] == [("t-00001", "ghost")]
    assert later.offline == ["ghost"]
    assert ids_by_state(board)["retry"] == ["t-00001"]


def test_a_silent_worker_that_held_nothing_is_no_incident(board, tmp_path):
    """A worker with nothing to hand back or send stops without a goodbye push outside its turn."""
    b = admin.open_board(str(board), tmp_path / "mon")
    t0 = time.time()
    _heartbeat(b, "idle", t0)  # its last push: results, and a heartbeat holding nothing
    _heartbeat(b, "busy", t0, holding=[("x-00001", 1)])
    mon = Monitor(b, offline_after=180, ledger=AlertLedger(tmp_path / "ledger.json"))
    assert mon.poll(t0 + 10).offline == []
    later = mon.poll(t0 + 200)
    assert later.offline == ["busy"]  # silent while holding an order: an incident; "idle" only left


def _one_order_claimed(board, tmp_path, prefix: str, worker: str):
    """A board with one order, claimed by ``worker``; a monitor judging silence after 60 s."""
    b = admin.open_board(str(board), tmp_path / "mon")
    admin.publish(b, admin.simulate_orders(1, 0, prefix=prefix))
    GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "bridge").claim_available_work(worker)
    claimed_at = read_board_json(board, f"active_work/{prefix}-00001.json")["claimed_at"]
    return b, Monitor(b, offline_after=60, ledger=AlertLedger(tmp_path / "ledger.json")), claimed_at


def test_a_claim_a_live_worker_forgot_is_taken_back(board, tmp_path):
    b, mon, claimed_at = _one_order_claimed(board, tmp_path, "f", "amnesiac")
    _heartbeat(b, "amnesiac", claimed_at + 30)  # alive, holding nothing, but not for long enough yet
    assert mon.poll(claimed_at + 31).taken_back == []
    _heartbeat(b, "amnesiac", claimed_at + 61)
    report = mon.poll(claimed_at + 62)
    assert [x.work_id for x in report.taken_back] == ["f-00001"] and report.offline == []
    assert ids_by_state(board)["retry"] == ["f-00001"]


def test_an_order_whose_result_waits_to_be_folded_is_not_forgotten(board, tmp_path):
    b, mon, claimed_at = _one_order_claimed(board, tmp_path, "d", "quick")
    _heartbeat(b, "quick", claimed_at + 1, holding=[("d-00001", 1)])
    assert mon.poll(claimed_at + 2).taken_back == []
    # one push of the worker: its result (left for the next push to fold) and a heartbeat no longer listing it
    info = {"kind": "result", "worker_id": "quick", "work_id": "d-00001", "seq": 1, "status": "completed",
            "at": claimed_at + 61}
    b.repo.push([RefUpdate(result_ref("d-00001", 1), b.ref_commit(info, {RESULT_FILE: dumps({"text": "x"})}), "")])
    _heartbeat(b, "quick", claimed_at + 61)
    assert mon.poll(claimed_at + 62).taken_back == []
    assert ids_by_state(board)["active"] == ["d-00001"]  # the result's own fold decides it


def test_repairs_an_id_in_two_folders_a_spent_retry_item_and_stale_refs(board, tmp_path):
    b = admin.open_board(str(board), tmp_path / "mon")
    admin.publish(b, admin.simulate_orders(3, 0, prefix="r"))
    now = time.time()

    def corrupt(view):
        order = view.read_path("available_work/r-00001.json")[1]
        spent = dict(json.loads(view.read_path("available_work/r-00002.json")[1]), attempts=3,
                     errors=[{"attempt": 3, "error": "boom"}], not_before=now)
        return {state_path(OrderState.RETRY, "r-00001"): b.repo.write_blob(order),
                "available_work/r-00002.json": None,
                state_path(OrderState.RETRY, "r-00002"): b.repo.write_blob(dumps(spent))}, "corrupt the board"

    b.update_main(corrupt)
    # a claim ref that can never fold (seq 7 while the order is at seq 0), made long ago
    stale = b.ref_commit({"kind": "claim", "work_id": "r-00003", "seq": 7, "worker_id": "old", "claimed_at": now - 5000})
    b.repo.push([RefUpdate(f"{CLAIMS_PREFIX}r-00003/7", stale, "")])
    mon = Monitor(b, offline_after=180, ledger=AlertLedger(tmp_path / "ledger.json"))
    report = mon.poll(now)
    assert report.repaired == [
        "r-00001 was in retry_queue, available_work; kept retry_queue",
        "r-00002 is out of attempts (3 of 3); moved to failed_work",
        f"deleted stale ref {CLAIMS_PREFIX}r-00003/7 (never foldable)",
    ]
    states = ids_by_state(board)
    assert states["retry"] == ["r-00001"] and states["failed"] == ["r-00002"] and states["available"] == ["r-00003"]
    assert "refs/wms/claims/r-00003/7" not in git_out(board, "for-each-ref")
    assert report.failed == ["r-00002"]
    assert mon.poll(now).repaired == []  # nothing left to repair


def test_run_loop_polls_with_the_clock_it_is_given(board, tmp_path):
    b = admin.open_board(str(board), tmp_path / "mon")
    mon = Monitor(b, offline_after=180, ledger=AlertLedger(tmp_path / "ledger.json"))
    times, slept, seen = iter([1000.0, 2000.0, 3000.0]), [], []
    mon.run(5.0, clock=lambda: next(times), sleep=slept.append, polls=3, on_report=lambda r: seen.append(r.now))
    assert seen == [1000.0, 2000.0, 3000.0] and slept == [5.0, 5.0]


def test_long_running_monitor_stops_cleanly_on_ctrl_c(board, tmp_path):
    proc = subprocess.Popen([PY, "-m", "host_tools", "--environment", "production", "monitor", "--repo-url",
                             str(board), "--poll-seconds", "0.5"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith(f"Monitoring {board} every 0.5 s (offline after 180 s). Ctrl+C stops.")
        # a pass has ended once the monitor saved what it saw
        wait_for(lambda: list((tmp_path / "host").glob("*/monitor-liveness.json")), 30, what="a first pass")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.strip().endswith("Monitor stopped.")


def test_mailer_rejects_unknown_security():
    from host_tools.alerts import AlertError
    with pytest.raises(AlertError, match="SMTP security must be one of starttls, ssl, none"):
        Mailer(SmtpSettings(host="h", security="tls", to=("a@b",)))


def test_an_active_record_nobody_holds_is_taken_back_and_stopped_workers_are_no_incident(board, tmp_path):
    b = admin.open_board(str(board), tmp_path / "mon")
    admin.publish(b, admin.simulate_orders(1, 0, prefix="o"))

    def orphan(view):  # someone moved the order to active_work/ by hand: no holder, no claim
        data = view.read_path("available_work/o-00001.json")[1]
        return {"available_work/o-00001.json": None, "active_work/o-00001.json": b.repo.write_blob(data)}, "by hand"

    b.update_main(orphan)
    now = time.time()
    _heartbeat(b, "finished", now - 3600, state="stopped")
    report = Monitor(b, offline_after=180, ledger=AlertLedger(tmp_path / "ledger.json")).poll(now)
    assert [x.work_id for x in report.taken_back] == ["o-00001"]
    assert ids_by_state(board)["retry"] == ["o-00001"]
    assert report.offline == []  # it said it was stopping: not an incident
