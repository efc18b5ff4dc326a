"""Talking to git, split by idea.

- `run`: the one place that starts a git process (environment, redaction, typed timeouts, failure classes);
- `objects`: reading and writing objects of a local object store (trees, blobs, commits);
- `transport`: fetch and push (every race is decided by push's per-ref compare-and-swap), local refs;
- `clone`: the worker's bare local clone: creation, health, settings, tidying;
- `reader`: files of one board commit for a processor thread.

Failure policy (every message passes through `redact` before it leaves this package):

- git missing                        -> GitNotFound (exit, with install hint)
- server unreachable / timed out     -> BoardUnreachable / GitTimeout (the caller backs off and retries)
- authentication / permission denied -> BoardPermissionError (stop: a person must fix access)
- a ref's expected old value failed  -> reported per ref in PushResult (the caller re-reads and chooses again)
"""
from coordination.protocol.git.clone import CLONE_MARKER, LocalRepo, fork_transport
from coordination.protocol.git.objects import EMPTY_TREE, TreeEntry, blob_sha
from coordination.protocol.git.reader import TreeFileReader
from coordination.protocol.git.run import git_available
from coordination.protocol.git.transport import PushResult, RefUpdate

__all__ = ["CLONE_MARKER", "EMPTY_TREE", "LocalRepo", "fork_transport", "PushResult", "RefUpdate", "TreeEntry", "TreeFileReader",
           "blob_sha", "git_available"]
