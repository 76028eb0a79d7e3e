"""The request cache: identical requests are never sent twice, across reruns too."""

import json

from annotators.base import Request
from annotators.cache import RequestCache, request_key
from mumu.store import Store
from tests.annotators.fakes import scripted


def req(clip, **ctx):
    return Request(clip, "response", tags=["Piano"], context={"instruction": "Generate music.",
                                                              "music_caption": "Soft piano.", **ctx})


def test_key_covers_model_prompt_inputs_params_and_seed():
    base = dict(model="m", prompt_version="p1", inputs_hash="h", params={"temperature": 0.6}, seed=1)
    k = request_key(**base)
    assert k == request_key(**dict(base)) and len(k) == 64
    for field, value in [("model", "m2"), ("prompt_version", "p2"), ("inputs_hash", "h2"),
                         ("params", {"temperature": 0.7}), ("seed", 2)]:
        assert request_key(**{**base, field: value}) != k, field
    # dict order does not matter
    assert request_key(**{**base, "params": {"a": 1, "b": 2}}) == request_key(**{**base, "params": {"b": 2, "a": 1}})


def test_entries_are_atomic_files_in_the_store(tmp_path):
    store = Store(str(tmp_path))
    cache = RequestCache(store, "text")
    key = "ab" + "0" * 62
    assert cache.get(key) is None
    cache.put(key, {"text": "hello"})
    path = tmp_path / "cache" / "requests" / "text" / "ab" / f"{key}.json"
    assert json.loads(path.read_text())["text"] == "hello"
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    again = RequestCache(store, "text")  # a new process
    assert again.get(key)["text"] == "hello" and key in again and len(again) == 1
    # a corrupt entry is a miss, not a crash
    path.write_text("{not json")
    assert RequestCache(store, "text").get(key) is None


def test_rerun_sends_nothing(tmp_path):
    store = Store(str(tmp_path))
    first = scripted().use_cache(store)
    reqs = [req(f"as-{i}-0") for i in range(5)]
    a = first.annotate(reqs)
    assert first.sent == 5
    second = scripted().use_cache(store)  # a rerun in a fresh process
    b = second.annotate(reqs)
    assert second.sent == 0 and second.calls == []
    assert second.cache.stats()["hits"] == 5
    assert [r.text for r in a] == [r.text for r in b]
    assert second.rows(b) == first.rows(a)  # same rows, byte for byte
    # the store holds one entry per request, with its provenance
    entry = json.loads(next((tmp_path / "cache" / "requests" / "text").rglob("*.json")).read_text())
    assert {"model", "prompt_version", "params", "seed", "inputs", "text"} <= set(entry)


def test_anything_that_shapes_the_answer_misses(tmp_path):
    store = Store(str(tmp_path))
    scripted().use_cache(store).annotate([req("as-a-0")])
    for ann, r in [(scripted(generation={"seed": 1}), req("as-a-0")),  # another run seed
                   (scripted(generation={"temperature": 0.2}), req("as-a-0")),  # other sampling parameters
                   (scripted(), req("as-a-0", music_caption="Loud drums.")),  # other inputs
                   (scripted(), req("as-b-0"))]:  # another clip: another seed
        ann.use_cache(store).annotate([r])
        assert ann.sent == 1


def test_identical_requests_in_one_call_are_sent_once():
    ann = scripted()
    results = ann.annotate([req("as-a-0"), req("as-a-0"), req("as-a-0")])
    assert ann.sent == 1 and len({r.text for r in results}) == 1


def test_failed_answers_are_not_cached_but_invalid_ones_are(tmp_path):
    store = Store(str(tmp_path))
    ann = scripted(answer=lambda c: RuntimeError("server down")).use_cache(store)
    ann.annotate([req("as-a-0")])
    assert ann.cache.stats()["writes"] == 0  # an engine error is retried on the next run
    ann = scripted(answer=lambda c: "not json", options={"max_attempts": 2}).use_cache(store)
    ann.annotate([req("as-a-0")])
    assert ann.sent == 2
    again = scripted(answer=lambda c: "not json", options={"max_attempts": 2}).use_cache(store)
    r = again.annotate([req("as-a-0")])[0]
    assert again.sent == 0 and r.error_reason == "invalid_output:invalid_json"  # the whole chain replays
