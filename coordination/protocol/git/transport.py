"""Fetch and push, and the local refs a fetch leaves.

Every race is decided by `git push`'s per-ref compare-and-swap (Invariant 2): a `RefUpdate`
says what the ref must hold before, and `PushResult` says, ref by ref, whether the server
took it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from coordination.exceptions import BoardRefusesPushes, BoardUnreachable, WmsError
from coordination.protocol.git.run import GitRunner, last_lines


@dataclass(frozen=True)
class RefUpdate:
    """One ref change in a push. ``expect``: None = don't care (force), "" = must not exist, else old sha.

    >>> RefUpdate("refs/wms/claims/a/1", "c0ffee").refspec()
    'c0ffee:refs/wms/claims/a/1'
    >>> RefUpdate("refs/wms/heartbeats/w", "c0ffee", None).refspec()
    '+c0ffee:refs/wms/heartbeats/w'
    """

    ref: str
    new: str | None  # None deletes the ref
    expect: str | None = ""

    def refspec(self) -> str:
        src = self.new or ""
        plus = "+" if self.expect is None else ""
        return f"{plus}{src}:{self.ref}"


@dataclass
class PushResult:
    ok: dict  # ref -> bool
    messages: dict  # ref -> git's summary

    def accepted(self, ref: str) -> bool:
        return self.ok.get(ref, False)


def parse_push_porcelain(out: str) -> tuple[dict, dict]:
    """Per-ref outcome of `git push --porcelain`: (ref -> accepted, ref -> git's summary).

    >>> parse_push_porcelain("To origin\\n \\tc0:refs/a\\t[new reference]\\n!\\tc1:refs/b\\t[rejected] (stale info)\\nDone")
    ({'refs/a': True, 'refs/b': False}, {'refs/a': '[new reference]', 'refs/b': '[rejected] (stale info)'})
    """
    ok: dict[str, bool] = {}
    messages: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or ":" not in parts[1]:
            continue
        flag, spec, summary = parts[0], parts[1], parts[2]
        ref = spec.split(":", 1)[1]
        ok[ref] = flag in (" ", "+", "-", "*", "=")
        messages[ref] = summary
    return ok, messages


class Transport:
    """Fetch from and push to ``origin`` through ``runner``; counts what it did in ``counters``."""

    def __init__(self, runner: GitRunner, remote_name: str = "origin"):
        self.runner = runner
        self.remote_name = remote_name  # the configured remote, or a URL (an open board's fork)
        self.counters = {"fetch": 0, "push": 0, "push_rejected_refs": 0, "fetch_objects": 0}

    def fetch(self, refspecs: Iterable[str], *, depth: int | None = None, filter_spec: str | None = None,
              negotiation_tips: Iterable[str] = ()) -> None:
        """Fetch ``refspecs`` from the board. ``negotiation_tips``: the only local commits (or refs) git
        offers the server as what this clone has."""
        args = ["fetch", "--no-tags", "--prune", "--no-write-fetch-head", "--quiet", "--no-auto-gc",
                "--no-recurse-submodules"]
        if depth:
            args.append(f"--depth={depth}")
        if filter_spec:
            args.append(f"--filter={filter_spec}")
        args += [f"--negotiation-tip={tip}" for tip in negotiation_tips]
        code, _, err = self.runner.run(args + [self.remote_name, *refspecs])
        self.counters["fetch"] += 1
        if code != 0:
            raise BoardUnreachable(f"git fetch failed: {last_lines(err)}")

    def fetch_objects(self, shas: Iterable[str]) -> None:
        """Fetch these objects by id in one request (protocol v2 serves any object it has)."""
        shas = sorted(set(shas))
        if not shas:
            return
        code, _, err = self.runner.fetch_by_id(shas)
        self.counters["fetch"] += 1
        self.counters["fetch_objects"] += len(shas)
        if code != 0:
            raise BoardUnreachable(f"git fetch of {len(shas)} object(s) failed: {last_lines(err)}")

    def missing_objects(self, shas: Iterable[str]) -> list[str]:
        """Objects reachable from ``shas`` (trees or blobs) that this partial clone lacks; fetches nothing."""
        shas = list(shas)
        if not shas:
            return []
        code, out, err = self.runner.run(["rev-list", "--objects", "--no-object-names", "--missing=print", "--stdin"],
                                         network=False, input_bytes=("\n".join(shas) + "\n").encode())
        if code != 0:
            raise WmsError(f"git rev-list failed: {last_lines(err)}")
        return [line[1:] for line in out.split() if line.startswith("?")]

    def push(self, updates: list[RefUpdate], *, atomic: bool = False) -> PushResult:
        if not updates:
            return PushResult({}, {})
        args = ["push", "--porcelain", "--no-verify", "--quiet"]
        if atomic:
            args.append("--atomic")
        for u in updates:
            if u.expect is not None:
                args.append(f"--force-with-lease={u.ref}:{u.expect}")
        args += [self.remote_name] + [u.refspec() for u in updates]
        code, out, err = self.runner.run(args, classify=False)
        self.counters["push"] += 1
        ok, messages = parse_push_porcelain(out)
        missing = [u.ref for u in updates if u.ref not in ok]
        if missing:
            if code == 0:
                for ref in missing:
                    ok[ref] = True
            else:
                self.runner.classify_failure("push", err)
                raise BoardUnreachable(f"git push failed: {last_lines(err) or last_lines(out)}")
        self.counters["push_rejected_refs"] += sum(1 for v in ok.values() if not v)
        if any("branch is currently checked out" in m for m in messages.values()):
            raise BoardRefusesPushes(
                f"The board at {self.runner.url} is a repository with its branch main checked out (not a bare "
                "repository), and git refuses every push to a checked-out branch. Use a bare repository as the "
                "board: git init --bare NEW.git (or git clone --bare THIS NEW.git), then --repo-url NEW.git.")
        return PushResult(ok, messages)

    def ls_remote(self, prefix: str) -> dict[str, str]:
        """The server's refs under ``prefix`` and their shas, without fetching anything (one request)."""
        code, out, err = self.runner.run(["ls-remote", "--refs", self.remote_name, prefix + "*"])
        self.counters["ls_remote"] = self.counters.get("ls_remote", 0) + 1
        if code != 0:
            raise BoardUnreachable(f"git ls-remote failed: {last_lines(err)}")
        found = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if len(sha) == 40 and ref.startswith(prefix):
                found[ref] = sha
        return dict(sorted(found.items()))

    # -- local refs --------------------------------------------------------------------------
    def delete_local_ref(self, ref: str) -> None:
        self.runner.run(["update-ref", "-d", ref], network=False)

    def refs(self, prefix: str) -> dict[str, str]:
        """Local refs under ``prefix`` (which ends with /) and their shas.

        Read from the ref files directly (packed-refs, then loose refs, which win): the clone is
        written by this process's own git commands only, and this runs after every fetch, so it
        saves a git process each time. Anything unexpected falls back to `git for-each-ref`.
        """
        try:
            return refs_from_files(self.runner.path, prefix)
        except (OSError, ValueError):
            return self._refs_from_git(prefix)

    def _refs_from_git(self, prefix: str) -> dict[str, str]:
        code, out, err = self.runner.run(["for-each-ref", "--format=%(objectname) %(refname)", prefix], network=False)
        if code != 0:
            raise WmsError(f"git for-each-ref failed: {last_lines(err)}")
        result = {}
        for line in out.splitlines():
            sha, _, ref = line.partition(" ")
            result[ref] = sha
        return result


def refs_from_files(path: Path, prefix: str) -> dict[str, str]:
    """The refs under ``prefix`` of the repository at ``path``, read from packed-refs and loose ref
    files; ValueError for anything this does not read (reftable, a ref being written)."""
    if not prefix.startswith("refs/") or not prefix.endswith("/") or (path / "reftable").exists():
        raise ValueError("not a plain ref folder")
    result: dict[str, str] = {}
    try:
        packed = (path / "packed-refs").read_text(encoding="utf-8")
    except FileNotFoundError:
        packed = ""
    for line in packed.splitlines():
        if not line or line[0] in "#^":
            continue
        sha, _, ref = line.partition(" ")
        if len(sha) != 40 or not ref:
            raise ValueError(f"packed-refs line {line!r}")
        if ref.startswith(prefix):
            result[ref] = sha
    root = path / prefix
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".lock"):
                raise ValueError("a ref is being written")
            file = os.path.join(folder, name)
            with open(file, encoding="utf-8") as handle:
                sha = handle.read().strip()
            if len(sha) != 40:
                raise ValueError(f"ref file {file} holds {sha[:60]!r}")
            result[prefix + os.path.relpath(file, root).replace(os.sep, "/")] = sha
    return dict(sorted(result.items()))
