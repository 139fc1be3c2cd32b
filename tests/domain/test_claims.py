"""The claim policy on plain values: order, packing, custom resources and
fractional cores (no database, no event loop)."""

from __future__ import annotations

from dataclasses import dataclass

from banyan.resources import Amounts, Resources, free_share
from server.domain import claims


@dataclass(frozen=True)
class Task:
    id: str
    priority: int
    request: Amounts


def req(cores: float = 1, memory: int = 0, gpus: int = 0, **custom: float) -> Amounts:
    return Amounts(cores, memory, gpus, custom)


def in_order(*tasks: Task) -> list[Task]:
    return sorted(tasks, key=lambda t: claims.order_key(t.priority, t.id))


def pack(tasks: list[Task], free: Amounts, limit: int = 100) -> list[str]:
    return [t.id for t in claims.pack(in_order(*tasks), free, limit, lambda t: t.request)]


def test_order_is_priority_first_then_age() -> None:
    tasks = [Task("03", 0, req()), Task("01", 0, req()), Task("02", 5, req())]
    assert [t.id for t in in_order(*tasks)] == ["02", "01", "03"]


def test_packs_greedily_and_skips_what_does_not_fit() -> None:
    tasks = [Task("a", 9, req(cores=3)), Task("b", 8, req(cores=2)), Task("c", 7, req(cores=1))]
    assert pack(tasks, req(cores=4)) == ["a", "c"]


def test_stops_at_the_limit() -> None:
    tasks = [Task(f"t{i}", 0, req(cores=0.5)) for i in range(10)]
    assert pack(tasks, req(cores=8), limit=3) == ["t0", "t1", "t2"]


def test_a_zero_limit_claims_nothing() -> None:
    assert pack([Task("a", 0, req())], req(cores=8), limit=0) == []


def test_fractional_cores_add_up_despite_rounding() -> None:
    # 0.1 + 0.2 != 0.3 in floating point: ten tenths still fill one core exactly
    tasks = [Task(f"t{i}", 0, req(cores=0.1)) for i in range(12)]
    assert len(pack(tasks, req(cores=1.0))) == 10


def test_stops_once_no_core_is_left() -> None:
    tasks = [Task("a", 1, req(cores=2)), Task("b", 0, req(cores=0, memory=1))]
    assert pack(tasks, req(cores=2, memory=10)) == ["a"]


def test_memory_and_gpus_are_packed_too() -> None:
    tasks = [
        Task("a", 3, req(memory=6, gpus=1)),
        Task("b", 2, req(memory=6)),
        Task("c", 1, req(memory=4, gpus=1)),
        Task("d", 0, req(gpus=1)),
    ]
    assert pack(tasks, req(cores=8, memory=10, gpus=2)) == ["a", "c"]


def test_custom_resources_are_packed_and_missing_ones_count_as_zero() -> None:
    tasks = [
        Task("a", 3, req(licences=2)),
        Task("b", 2, req(licences=1.5)),
        Task("c", 1, req(licences=1)),
        Task("d", 0, req(scratch_gb=1)),
    ]
    assert pack(tasks, req(cores=8, licences=3)) == ["a", "c"]


def test_prefilter_bounds_are_the_whole_free_share() -> None:
    bound = claims.prefilter(req(cores=2, memory=5, gpus=1, licences=1))
    assert (bound.memory, bound.gpus) == (5, 1)
    assert 2 < bound.cores < 2.001


def test_scan_limit_grows_with_the_limit() -> None:
    assert claims.scan_limit(4) == 4 * claims.SCAN_FACTOR
    assert claims.scan_limit(-1) == 0


def test_free_share_is_capacity_less_what_runs() -> None:
    capacity = Resources.model_validate({"cores": 4, "memory": 100, "gpus": 2, "licences": 3})
    running = [Resources.model_validate({"cores": 1.5, "memory": 40, "gpus": 1, "licences": 1})]
    share = free_share(capacity, running)
    assert share == Amounts(2.5, 60, 1, {"licences": 2.0})
    assert free_share(capacity, running, gpus=0).gpus == 0


def test_would_claim_is_the_claim_policy_for_one_task() -> None:
    assert claims.would_claim(req(cores=2, licences=1), req(cores=2, licences=1))
    assert not claims.would_claim(req(cores=2, licences=1), req(cores=2))


def test_reaches_replays_the_claims_over_the_tasks_ahead() -> None:
    free = req(cores=2)
    assert claims.reaches([], req(), free)
    assert claims.reaches([req()], req(), free)
    assert not claims.reaches([req(), req()], req(), free)  # the room goes to those ahead
    # Ahead but too big for the free share: skipped, as the claim's prefilter does.
    assert claims.reaches([req(cores=3), req(cores=3)], req(), free)
    # Many more ahead than a worker's repeated claims ever hand out, all fitting: not reached.
    assert not claims.reaches([req(cores=0.01)] * 500, req(), req(cores=4))


def test_reaches_follows_repeated_claims_past_the_first_limit() -> None:
    # 40 one-core tasks ahead, 64 cores free: the first claim hands out 32, the
    # worker claims again at once (its answer was not empty) and gets the rest.
    assert claims.reaches([req()] * 40, req(), req(cores=64), limit=32)
    assert not claims.reaches([req()] * 64, req(), req(cores=64), limit=32)


def test_reaches_stops_where_a_claims_window_holds_nothing_that_fits() -> None:
    # A claim looks at scan_limit(limit) candidates that pass the prefilter; if
    # none of them fits (a custom resource this worker lacks), the answer is
    # empty and the worker waits: a task further back is not about to start.
    window = claims.scan_limit(4)
    blocked = [req(licences=1)] * window
    assert not claims.reaches(blocked, req(), req(cores=8), limit=4)
    assert claims.reaches(blocked[:-1], req(), req(cores=8), limit=4)


def test_reaches_never_promises_a_start_behind_an_unknown_line() -> None:
    assert not claims.reaches([req()], req(), req(cores=8), complete=False)


def test_pack_queued_takes_each_that_fits_the_whole_capacity_up_to_depth() -> None:
    one, big = Amounts(1, 0, 0), Amounts(8, 0, 0)
    chosen = claims.pack_queued([one, big, one, one], Amounts(2, 0, 0), 2, lambda r: r)
    assert chosen == [one, one]
    assert claims.pack_queued([one], Amounts(2, 0, 0), 0, lambda r: r) == []


def test_prefetch_depth_is_none_while_a_peer_is_idle_and_capped() -> None:
    assert claims.prefetch_depth(asked=3, max_prefetch=2, others_idle=False) == 2
    assert claims.prefetch_depth(asked=1, max_prefetch=4, others_idle=False) == 1
    assert claims.prefetch_depth(asked=3, max_prefetch=4, others_idle=True) == 0
    assert claims.prefetch_depth(asked=3, max_prefetch=0, others_idle=False) == 0
