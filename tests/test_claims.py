"""The claim protocol without git (coordination/protocol/claims.py); the race itself is decided by a real
server in tests/test_invariants.py."""
import random

from coordination.protocol.claims import Candidate, choose, claim_holds, claim_updates, lapsed_holder, share_of, takeback_updates
from coordination.protocol.liveness import LivenessTracker
from coordination.protocol.records import Located, RefNote
from coordination.protocol.states import OrderState

AVAILABLE, RETRY, ACTIVE = OrderState.AVAILABLE, OrderState.RETRY, OrderState.ACTIVE


def at(state, seq=0, **record):
    return Located(state, f"{state.folder}/x.json", "blob", dict(record, seq=seq))


def note(worker, seq=1):
    return RefNote(f"refs/wms/claims/a/{seq}", "c", {"worker_id": worker, "seq": seq})


def test_invariant_2_the_server_decides_claims_and_a_claim_counts_only_while_main_agrees():
    # the server took our create-only ref, and main still offers the order at seq - 1
    assert claim_holds(at(AVAILABLE, 0), note("me"), 1, "me")
    assert claim_holds(at(RETRY, 1), note("me", 2), 2, "me")
    # main already shows our claim folded
    assert claim_holds(at(ACTIVE, 1, worker_id="me"), None, 1, "me")
    # the server holds another worker's ref under that name, or none
    assert not claim_holds(at(AVAILABLE, 0), note("other"), 1, "me")
    assert not claim_holds(at(AVAILABLE, 0), None, 1, "me")
    # the order moved on since we chose: a pruned claim name re-created from a stale view
    assert not claim_holds(at(AVAILABLE, 1), note("me"), 1, "me")
    assert not claim_holds(Located(OrderState.COMPLETED, "c", "b", {"seq": 1}), note("me"), 1, "me")
    assert not claim_holds(at(ACTIVE, 1, worker_id="other"), note("me", 1), 1, "me")
    # an active order is ours only as a takeover of a lapsed holder
    assert not claim_holds(at(ACTIVE, 1, worker_id="gone"), note("me", 2), 2, "me")
    assert claim_holds(at(ACTIVE, 1, worker_id="gone"), note("me", 2), 2, "me", takeover=True)


def test_claims_are_create_only_refs_at_the_next_seq():
    made = []
    updates = claim_updates([Candidate("a", 3, RETRY), Candidate("b", 2, ACTIVE, takeover_of="gone")], "me", 50.0,
                            lambda info: made.append(info) or f"commit-{len(made)}", lease_seconds=180.0)
    assert [(u.ref, u.new, u.expect) for u in updates] == [("refs/wms/claims/a/3", "commit-1", ""),
                                                           ("refs/wms/claims/b/2", "commit-2", "")]
    assert made[0] == {"kind": "claim", "work_id": "a", "seq": 3, "worker_id": "me", "claimed_at": 50.0,
                       "lease_seconds": 180.0}
    assert made[1]["takeover_of"] == "gone"
    back = takeback_updates([("c", 4, "gone")], "monitor", 60.0, lambda info: info["kind"])
    assert [(u.ref, u.new, u.expect) for u in back] == [("refs/wms/claims/c/5", "takeback", "")]


def offers_and_places():
    places = {"a1": at(AVAILABLE), "a2": at(AVAILABLE, 2), "a3": at(AVAILABLE),
              "twice": Located(AVAILABLE, "available_work/twice.json", "b", {}, ["retry_queue/twice.json"]),
              "later": at(RETRY, 1, not_before=200.0), "now": at(RETRY, 1, not_before=50.0),
              "held": at(ACTIVE, 1, worker_id="w"), "moved": at(RETRY, 1)}
    offers = [(AVAILABLE, ["a1", "a2", "a3", "twice", "moved"]), (RETRY, ["later", "now"]), (ACTIVE, ["held"])]
    return offers, places


def test_choose_offers_each_order_once_at_its_next_seq_and_skips_what_is_not_on_offer():
    offers, places = offers_and_places()
    pending = {("a3", 0)}
    chosen = choose(offers, places.get, lambda i, s: (i, s) in pending, 100.0, exclude={"a1"}, limit=10,
                    rng=random.Random(1))
    # a1 excluded (held by this worker), a3 has a pending claim, twice is in two folders, moved is not
    # where it was listed, later waits until 200, held has a live holder (no `lapsed` given)
    assert sorted((c.work_id, c.seq, c.state) for c in chosen) == [("a2", 3, AVAILABLE), ("now", 2, RETRY)]


def test_choose_takes_over_an_order_only_from_a_lapsed_holder_and_stops_at_the_limit():
    offers, places = offers_and_places()
    chosen = choose(offers, places.get, lambda i, s: False, 300.0, limit=10, lapsed=lambda i, loc: "w")
    assert ("held", 2, ACTIVE, "w") in [(c.work_id, c.seq, c.state, c.takeover_of) for c in chosen]
    assert len(choose(offers, places.get, lambda i, s: False, 300.0, limit=2)) == 2


def test_each_worker_tries_its_own_share_first():
    ids = [f"order-{i}" for i in range(40)]
    shares = {w: share_of({"w1", "w2", "w3"}, w) for w in ("w1", "w2", "w3")}
    assert all(sum(share(i) for share in shares.values()) == 1 for i in ids)  # a partition of the ids
    places = {i: at(AVAILABLE) for i in ids}
    chosen = choose([(AVAILABLE, ids)], places.get, lambda i, s: False, 0.0, limit=5, rng=random.Random(3),
                    share=shares["w2"])
    assert all(shares["w2"](c.work_id) for c in chosen)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_silent_holder_lapses_after_offline_after_on_the_observers_own_clock():
    clock = Clock()
    liveness = LivenessTracker(60.0, clock=clock)
    loc = at(ACTIVE, 1, worker_id="w", claimed_at=-10**9)  # the holder's own clock is never trusted
    assert lapsed_holder(liveness, "me", "a", loc) == (None, True)  # first seen now: still learning
    clock.t = 30.0
    liveness.observe("w", "beat-2", {})
    clock.t = 80.0
    assert lapsed_holder(liveness, "me", "a", loc) == (None, False)  # heard from 50 s ago, watched 80 s
    clock.t = 91.0
    assert lapsed_holder(liveness, "me", "a", loc) == ("w", False)
    assert lapsed_holder(liveness, "w", "a", loc) == (None, False)  # never one's own order
    liveness.observe("w", "beat-3", {"state": "stopped"})
    assert lapsed_holder(liveness, "me", "a", at(ACTIVE, 1, worker_id="w")) == ("w", False)
