"""The process pool for CPU-bound item work: order, per-item errors, a dead worker, the defaults."""

from __future__ import annotations

import os
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from mumu import cpu_pool
from mumu.config import RunnerSpec


def square_or_refuse(x: int) -> tuple[int, int]:
    if x == 3:
        raise ValueError("three is refused")
    return x * x, os.getpid()


def die(x: int) -> int:
    if x == 1:
        os._exit(7)  # a worker killed (for memory, by a signal): no exception, no reply
    return x


def test_outcomes_in_item_order_with_each_items_error():
    got = cpu_pool.map_items(square_or_refuse, range(6), processes=2)
    assert [o.value[0] for o in got if o.error is None] == [0, 1, 4, 16, 25]
    assert isinstance(got[3].error, ValueError) and "three" in str(got[3].error)
    with pytest.raises(ValueError):
        got[3].get()
    assert {o.value[1] for o in got if o.error is None} - {os.getpid()}, "the items ran in worker processes"
    assert cpu_pool.offloaded_cpu() >= 0.0


class Unrebuildable(Exception):
    def __init__(self, a: str, b: str):  # pickled with args=(message,): not rebuilt by default
        super().__init__(f"{a} {b}")


def refuse_as_an_item(x: int) -> int:
    from mumu.media import MediaError
    from sources.download import DownloadError

    if x == 1:
        raise MediaError("undecodable_audio", "one does not decode")
    if x == 2:
        raise DownloadError("video_unavailable", "two is gone", transient=False)
    if x == 3:
        raise Unrebuildable("three", "is odd")
    return x


def test_item_errors_come_back_with_their_reason_and_the_pool_stays_whole():
    got = cpu_pool.map_items(refuse_as_an_item, range(5), processes=2)
    assert [o.value for o in got] == [0, None, None, None, 4]
    assert (type(got[1].error).__name__, got[1].error.reason, got[1].error.detail) == ("MediaError", "undecodable_audio",
                                                                                      "one does not decode")
    assert got[2].error.reason == "video_unavailable" and got[2].error.transient is False
    assert isinstance(got[3].error, RuntimeError) and "Unrebuildable: three is odd" in str(got[3].error)
    assert [o.get() for o in cpu_pool.map_items(refuse_as_an_item, [0, 4], processes=2)] == [0, 4]


def test_one_process_runs_in_this_thread_with_the_same_outcomes():
    here = cpu_pool.map_items(square_or_refuse, range(6), processes=1)
    there = cpu_pool.map_items(square_or_refuse, range(6), processes=2)
    assert [o.value[1] for o in here if o.error is None] == [os.getpid()] * 5
    assert [o.value and o.value[0] for o in here] == [o.value and o.value[0] for o in there]
    assert [type(o.error) for o in here] == [type(o.error) for o in there]


def test_a_dead_worker_fails_the_call_and_the_next_call_gets_a_new_pool():
    with pytest.raises(BrokenProcessPool):
        cpu_pool.map_items(die, [0, 1, 2], processes=2)
    assert [o.get() for o in cpu_pool.map_items(die, [0, 2, 4], processes=2)] == [0, 2, 4]


def test_how_many_processes():
    cores = cpu_pool.usable_cores()
    assert cpu_pool.processes_for(RunnerSpec(kind="thread")) == cores  # threads of one process share the pool
    assert cpu_pool.processes_for(RunnerSpec(kind="dask")) == 1  # already one worker per core
    assert cpu_pool.processes_for(RunnerSpec(kind="process")) == 1
    assert cpu_pool.processes_for(RunnerSpec(kind="dask", cpu_processes=3)) == 3
    with pytest.raises(ValueError):
        RunnerSpec(cpu_processes=0)


def test_features_captions_are_the_same_on_the_pool_as_in_the_thread():
    from annotators.base import Request
    from annotators.features_backend import FeaturesMusicCaptioner
    from mumu.config import AnnotatorSpec, GenerationSpec

    sr = 16000
    t = np.arange(sr * 3) / sr
    requests = [Request(f"c{i}", "music_caption", audio=((0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), sr),
                        tags=["music"]) for i, f in enumerate((220.0, 330.0, 440.0))]
    requests.append(Request("silent", "music_caption", audio=(np.zeros(0, dtype=np.float32), sr), tags=[]))
    captioner = FeaturesMusicCaptioner("music_caption", AnnotatorSpec(backend="features", model="librosa-features"),
                                       GenerationSpec())
    captioner.processes = 1
    here = captioner.annotate(requests)
    captioner.processes = 2
    there = captioner.annotate(requests)
    assert [(r.clip_id, r.text, r.facts, r.error_reason) for r in here] == \
           [(r.clip_id, r.text, r.facts, r.error_reason) for r in there]
    assert here[0].text and here[-1].error_reason == "unmeasurable_audio"
