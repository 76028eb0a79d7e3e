"""Serving a role's model to many workers: vLLM's OpenAI-compatible server, one per GPU.

``mumu serve ROLE`` starts ``replicas`` servers of the model the profile names for ``ROLE`` (one
per visible GPU by default, or one per ``tensor_parallel`` GPUs; one on a machine without GPUs),
waits until each answers, and prints their URLs and the ``--set`` lines that point a build's
``openai`` backend at them. Builds on any number of CPU workers then send that role's requests
to the servers (spread round-robin, ``options.concurrency`` in flight per server), and each
server's continuous batching runs the requests of every worker together.

A server runs the same model with the same engine settings as the in-process ``vllm`` backend
(``annotators.vllm_backend.engine_kwargs``, passed as vLLM's command-line flags) and answers to
the spec's model id, so an answer is the one the in-process engine gives, and the request cache
is shared by both. Each server also answers to a name of its own, and is taken as ready only when
that name is listed: a server of another run that happens to hold the port is never mistaken for it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mumu.config import Config

SERVABLE = ("vllm", "openai")  # backends whose model vLLM's server runs
START_TIMEOUT_S = 600.0


class ServeError(RuntimeError):
    """A server could not be started; one line naming the setting or the server's last words."""


@dataclass
class Server:
    role: str
    url: str  # the OpenAI base URL, http://host:port/v1
    process: subprocess.Popen
    log: Path
    gpus: list[str] = field(default_factory=list)
    token: str = ""

    @property
    def root(self) -> str:
        return self.url.rsplit("/v1", 1)[0]


def flags(engine: dict[str, Any]) -> list[str]:
    """vLLM's command-line flags for ``vllm.LLM`` keyword arguments (``max_model_len=1024`` ->
    ``--max-model-len 1024``; ``True`` -> ``--flag``; ``False`` -> ``--no-flag``; a dict -> JSON)."""
    out: list[str] = []
    for name, value in engine.items():
        flag = "--" + name.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + name.replace("_", "-"))
        elif isinstance(value, (dict, list)):
            out += [flag, json.dumps(value)]
        else:
            out += [flag, str(value)]
    return out


def served_model(cfg: Config, role: str) -> str:
    """The name the servers answer to: the spec's ``options.served_model``, else its model id."""
    spec = getattr(cfg.annotators, role)
    return str(spec.options.get("served_model", spec.model))


def server_argv(cfg: Config, role: str, host: str, port: int, token: str, cpu: bool,
                tensor_parallel: int = 1) -> list[str]:
    """The command that starts one server of ``role``'s model."""
    from annotators.tiny_models import resolve
    from annotators.vllm_backend import engine_kwargs

    spec = getattr(cfg.annotators, role)
    generation = spec.generation or cfg.generation
    engine = engine_kwargs(spec.options, generation.seed, cpu)
    if tensor_parallel > 1:
        engine["tensor_parallel_size"] = tensor_parallel
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve(spec.model),
            "--served-model-name", served_model(cfg, role), token, "--host", host, "--port", str(port),
            *flags(engine)]


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _listed(url: str) -> set[str]:
    with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
        return {m["id"] for m in json.load(r)["data"]}


def _tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _launch(cfg: Config, role: str, host: str, gpus: list[str], log: Path, cpu: bool, tensor_parallel: int) -> Server:
    token = f"mumu-{role}-{uuid.uuid4().hex[:12]}"
    port = _free_port(host)
    env = dict(os.environ)
    if cpu:
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the engine core in the server's process, as in-process
    else:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(server_argv(cfg, role, host, port, token, cpu, tensor_parallel), stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    public = socket.gethostname() if host in ("0.0.0.0", "::") else host  # what other machines call this one
    return Server(role, f"http://{public}:{port}/v1", proc, log, gpus, token)


def _ready(server: Server) -> bool | None:
    """True: this server answers; None: not yet; False: its process ended."""
    if server.process.poll() is not None:
        return False
    try:
        return True if server.token in _listed(server.url) else None
    except (OSError, ValueError, KeyError):
        return None


def start_servers(cfg: Config, role: str, replicas: int | None = None, tensor_parallel: int = 1,
                  host: str = "127.0.0.1", log_dir: str | os.PathLike = "logs/serve",
                  timeout_s: float = START_TIMEOUT_S) -> list[Server]:
    """Start the servers of ``role`` and wait until every one answers; stops them all on failure."""
    from mumu.devices import gpu_ids, visible_gpus

    spec = getattr(cfg.annotators, role, None)
    if spec is None:
        raise ServeError(f"serve: no annotator role {role!r} (annotators.{role})")
    if spec.backend not in SERVABLE:
        raise ServeError(f"annotators.{role}.backend is {spec.backend!r}: only a vLLM model can be served "
                         f"(backends {', '.join(SERVABLE)}); run this role in-process on the GPU workers")
    tensor_parallel = max(1, int(tensor_parallel))
    gpus = visible_gpus()
    cpu = gpus == 0
    if replicas is None:
        replicas = 1 if cpu else max(1, gpus // tensor_parallel)
    if not cpu and replicas * tensor_parallel > gpus:
        raise ServeError(f"serve: {replicas} replica(s) x {tensor_parallel} GPU(s) each, but {gpus} GPU(s) visible")
    ids = gpu_ids(gpus)
    log_dir = Path(log_dir)

    def launch(i: int) -> Server:
        return _launch(cfg, role, host, ids[i * tensor_parallel:(i + 1) * tensor_parallel], log_dir / f"{role}-{i}.log",
                       cpu, tensor_parallel)

    servers = [launch(i) for i in range(replicas)]  # all start at once; each is then waited for
    try:
        deadline = time.monotonic() + timeout_s
        for i in range(replicas):
            for attempt in range(3):
                if _wait(servers[i], deadline):
                    break
                log = _tail(servers[i].log)
                # a port taken between choosing it and the server binding it: the same server on another port
                if "address already in use" not in log.lower() or attempt == 2:
                    raise ServeError(f"the {role} server {i} exited at start (log {servers[i].log}):\n{log}")
                servers[i] = launch(i)
        return servers
    except BaseException:
        stop_servers(servers)
        raise


def _wait(server: Server, deadline: float) -> bool:
    """True once ``server`` answers, False when its process ended first."""
    while True:
        state = _ready(server)
        if state is not None:
            return state
        if time.monotonic() > deadline:
            raise ServeError(f"the {server.role} server at {server.url} did not answer in time "
                             f"(log {server.log}):\n{_tail(server.log)}")
        time.sleep(0.5)


def stop_servers(servers: list[Server], grace_s: float = 30.0) -> None:
    for s in servers:
        if s.process.poll() is None:
            s.process.terminate()
    for s in servers:
        try:
            s.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            s.process.kill()
            s.process.wait()


def client_settings(cfg: Config, role: str, urls: list[str]) -> list[str]:
    """The ``--set`` assignments that send ``role``'s requests to ``urls`` (the ``openai`` backend)."""
    return [f"annotators.{role}.backend=openai", f"annotators.{role}.options.base_urls={json.dumps(urls)}",
            f"annotators.{role}.options.served_model={served_model(cfg, role)}"]


def requests_served(server_root: str) -> int:
    """How many requests a vLLM server has finished (its ``vllm:request_success_total`` counters)."""
    with urllib.request.urlopen(f"{server_root}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vllm:request_success_total"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)
