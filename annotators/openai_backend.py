"""The ``openai`` backend: the same chat requests sent to OpenAI-compatible servers.

Many CPU workers can share a pool of GPU servers (``python -m vllm.entrypoints.openai.api_server``
or ``vllm serve``): each worker holds one client per server and sends a batch as concurrent
requests, which the server's continuous batching then runs together. Requests with an output
schema ask for ``response_format={"type": "json_schema", ...}``, which vLLM's server enforces with
structured outputs. Media go as data URLs in ``image_url`` / ``video_url`` / ``audio_url`` parts.

``options`` of the annotator spec:

* ``base_url`` or ``base_urls`` (a list; requests are spread over them round-robin); default the
  ``OPENAI_BASE_URL`` environment variable, else ``http://127.0.0.1:8000/v1``;
* ``api_key``: default ``OPENAI_API_KEY`` or ``EMPTY`` (vLLM's server accepts any key unless
  started with ``--api-key``);
* ``served_model``: the model name the server knows (default: the spec's ``model``);
* ``concurrency`` (default 16): requests in flight per server from each worker; ``timeout``
  (s, default 600); ``max_retries`` (default 3; the client retries connection errors and
  429/5xx with backoff). What still fails to connect then (a server down, a timeout, 5xx, 429)
  raises ``BackendUnavailable``: the shard fails without a marker and is redone by a rerun,
  where a request the server rejects (400: too long, bad media) fails that item alone;
* ``json_mode``: ``response_format`` (default) or ``structured_outputs`` (vLLM's own
  ``extra_body={"structured_outputs": {"json": schema}}``);
* ``regex`` (default true): a plain-text answer's pattern (the one-sentence captions) goes to the
  server as vLLM's ``extra_body={"structured_outputs": {"regex": ...}}``; false for servers that
  do not know vLLM's extensions (the answers are checked either way);
* the request options of ``annotators.requests``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from annotators.chat_messages import ChatRequest, to_openai_messages
from annotators.requests import BackendUnavailable, ChatAnnotator, Generation


class OpenAIAnnotator(ChatAnnotator):
    backend = "openai"
    continuous_batching = True  # the server schedules; ``concurrency`` bounds what is in flight
    thread_safe = True  # HTTP clients: shards of a thread runner may send at the same time

    clients: list = []

    @property
    def base_urls(self) -> list[str]:
        urls = self.options.get("base_urls") or [self.options.get("base_url") or os.environ.get("OPENAI_BASE_URL")
                                                 or "http://127.0.0.1:8000/v1"]
        return [str(u) for u in urls]

    def _load(self) -> None:
        from openai import OpenAI

        key = self.options.get("api_key") or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.clients = [OpenAI(base_url=url, api_key=key, timeout=float(self.options.get("timeout", 600)),
                               max_retries=int(self.options.get("max_retries", 3))) for url in self.base_urls]
        per_server = max(1, int(self.options.get("concurrency", 16)))
        self._pool = ThreadPoolExecutor(max_workers=per_server * len(self.clients),
                                        thread_name_prefix=f"openai-{self.role}")
        self._next = 0

    def _unload(self) -> None:
        self._pool.shutdown(wait=True)
        for c in self.clients:
            c.close()
        self.clients = []

    def request_body(self, chat: ChatRequest) -> dict[str, Any]:
        """The keyword arguments of ``client.chat.completions.create`` for one request."""
        p = chat.params
        body: dict[str, Any] = {
            "model": self.options.get("served_model", self.spec.model),
            "messages": to_openai_messages(chat.messages),
            "temperature": float(p.get("temperature", 0.0)), "top_p": float(p.get("top_p", 1.0)),
            "max_tokens": int(p.get("max_tokens", 256)), "seed": chat.seed,
        }
        extra: dict[str, Any] = {}
        if chat.schema is not None:
            if self.options.get("json_mode", "response_format") == "structured_outputs":
                extra["structured_outputs"] = {"json": chat.schema}
            else:
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": f"{chat.kind}_output", "schema": chat.schema}}
        elif chat.output.regex and self.options.get("regex", True):
            extra["structured_outputs"] = {"regex": chat.output.regex}
        for name in ("ignore_eos", "min_tokens"):  # vLLM's extensions, used by the benchmark
            if name in p:
                extra[name] = p[name]
        if extra:
            body["extra_body"] = extra
        return body

    def _one(self, client, chat: ChatRequest) -> Generation:
        import openai

        try:
            resp = client.chat.completions.create(**self.request_body(chat))
        except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError) as e:
            raise BackendUnavailable(f"{client.base_url}: {type(e).__name__}: {e}"[:1000]) from e
        except Exception as e:  # the server rejected this request (too long, bad media): it fails alone
            return Generation(None, error=f"{type(e).__name__}: {e}"[:1000])
        choice = resp.choices[0]
        return Generation(choice.message.content, choice.finish_reason)

    def _generate(self, chats: list[ChatRequest]) -> list[Generation]:
        n = len(self.clients)
        futures = []
        for chat in chats:
            client = self.clients[self._next % n]
            self._next += 1
            futures.append(self._pool.submit(self._one, client, chat))
        answers, down = [], None
        for f in futures:  # every request finishes (or fails) before the call returns
            try:
                answers.append(f.result())
            except BackendUnavailable as e:
                answers.append(None)
                down = down or e
        if down is not None:
            raise BackendUnavailable(str(down), answers) from down
        return answers
