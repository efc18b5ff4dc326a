"""The archive: statistics and clean-up, from the seed's Python API and from the CLI."""
import json
import time

from coordination.api import GitHubWorkBridge
from coordination.protocol.archive import archive_path, month_of
from coordination.protocol.records import dumps
from host_tools import admin
from tests.helpers import git_out, host
from tests.test_host_support import invoke, main_files


def archived_board(board, tmp_path):
    """Two results collected this month, and one archived in January 2020 (an old month)."""
    host("publish", "--repo-url", str(board), "--simulate", "2", "--seconds", "0", "--prefix", "a")
    bridge = GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "bridge")
    for _ in range(2):
        bridge.submit_completed_work(bridge.claim_available_work("w1"), {"text": "x"})
    assert invoke("collect", "--repo-url", str(board), "--out", str(tmp_path / "out")).exit_code == 0
    b = admin.open_board(str(board), tmp_path / "edit")
    old = dumps({"work_id": "old-1", "kind": "simulate", "result": {"text": "x"}, "completed_at": 1579000000})
    b.update_main(lambda v: ({archive_path("2020-01", "old-1"): b.repo.write_blob(old)}, "an old archive"))
    return bridge, len(old)


def test_seed_api_one_liners(board, tmp_path):
    _, old_size = archived_board(board, tmp_path)
    bridge = GitHubWorkBridge(repo_url=str(board), workdir=tmp_path / "api")
    stats = bridge.get_archive_statistics()
    month = month_of(time.time())
    assert stats["total_archived"] == 3 and stats["completed_not_archived"] == 0
    assert sorted(stats["months"]) == ["2020-01", month]
    assert stats["months"]["2020-01"] == {"records": 1, "size_bytes": old_size, "cleaned_ids": 0}
    assert (stats["oldest_month"], stats["newest_month"]) == ("2020-01", month)
    outcome = bridge.cleanup_old_archives(days_to_keep=90)
    assert (outcome["removed_records"], outcome["months"]) == (1, {"2020-01": 1})
    assert git_out(board, "show", "main:archive/2020-01/ids.txt") == "old-1\n"
    assert not [f for f in main_files(board) if f.startswith("archive/2020-01/") and f.endswith(".json")]
    after = bridge.get_archive_statistics()
    assert after["total_archived"] == 2 and after["months"]["2020-01"]["cleaned_ids"] == 1
    assert bridge.cleanup_old_archives(days_to_keep=90)["removed_records"] == 0


def test_archive_commands(board, tmp_path):
    archived_board(board, tmp_path)
    month = month_of(time.time())
    result = invoke("archive-stats", "--repo-url", str(board))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith("Archived: 3 result(s), 0.0 MB; 0 completed not yet collected.")
    assert result.stdout.splitlines()[1].startswith("  2020-01: 1 result(s), 0.0 MB")
    assert json.loads(invoke("archive-stats", "--repo-url", str(board), "--json").stdout)["total_archived"] == 3
    result = invoke("cleanup-archives", "--repo-url", str(board), "--days-to-keep", "90")
    assert (result.exit_code, result.stdout) == (0, "Removed 1 archived result(s): 2020-01 (1).\n")
    result = invoke("cleanup-archives", "--repo-url", str(board), "--days-to-keep", "90")
    assert result.stdout == "Nothing older than 90 days in the archive.\n"
    assert invoke("archive-stats", "--repo-url", str(board)).stdout.splitlines()[1] == \
        "  2020-01: 0 result(s), 0.0 MB, 1 cleaned up"
    result = invoke("cleanup-archives", "--repo-url", str(board), "--days-to-keep", "-1")
    assert result.exit_code == 2 and "-1 is not in the range x>=0" in result.stderr
    assert month in json.loads(invoke("archive-stats", "--repo-url", str(board), "--json").stdout)["months"]
