"""``mumu server up|down|status``: a local Prefect server with the pipeline's pools, limits,
deployments and workers.

``up`` starts, in this order, each as its own process with ``PREFECT_API_URL`` exported:

1. ``prefect server start`` on ``--host`` (127.0.0.1) with SQLite under ``PREFECT_HOME``
   (``<repo>/.prefect`` unless set) and analytics off; waits for ``/api/health``;
2. the work pools ``mumu-cpu`` and ``mumu-gpu`` (both ``process`` type; ``mumu-gpu`` with a
   pool concurrency limit of one flow run per GPU) and the global concurrency limits
   ``mumu-downloads`` (a rate limit through slot decay, used by ``sources/download.py``) and
   ``mumu-gpu`` (one slot per GPU, for tasks that load a model);
3. the workers: ``--cpu-workers`` on ``mumu-cpu`` and one worker per GPU on ``mumu-gpu``
   (each with ``CUDA_VISIBLE_DEVICES`` set to its GPU and ``--limit 1``);
4. ``prefect --no-prompt deploy --all`` from the repository's ``prefect.yaml`` (while the
   workers start).

Their PIDs (with each process's start time, so a recycled PID is never signalled) go to
``<PREFECT_HOME>/mumu-server.json``; ``down`` stops the workers (and the flow runs they
started) before the server, by those PIDs; ``status`` shows what runs and the UI URL.
"""

# size: one command group (server up/down/status, workers, deployments) sharing its process bookkeeping.

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from mumu.devices import gpu_ids, visible_gpus
from mumu.limits import DOWNLOADS_LIMIT, GPU_LIMIT

CPU_POOL = "mumu-cpu"
GPU_POOL = "mumu-gpu"
STATE_FILE = "mumu-server.json"

app = typer.Typer(help="A local Prefect server with the pipeline's work pools, limits, deployments and workers.",
                  no_args_is_help=True)


# --------------------------------------------------------------------------- places and environment


def repo_dir() -> Path:
    """The checkout holding prefect.yaml: the working directory when it has one, else this package's parent."""
    cwd = Path.cwd()
    if (cwd / "prefect.yaml").exists():
        return cwd
    return Path(__file__).resolve().parents[1]


def default_home(repo: Path) -> Path:
    return Path(os.environ.get("PREFECT_HOME") or repo / ".prefect")


def state_path(home: Path) -> Path:
    return Path(home) / STATE_FILE


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def child_env(home: Path, api_url: str, repo: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every process `up` starts: one home, one API URL, no analytics, no prompts."""
    env = dict(os.environ)
    env.update({
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLI_PROMPT": "false",
        # relative data roots of flow runs resolve against the checkout, as they do for `mumu` in it
        "MUMU_DATA_HOME": os.environ.get("MUMU_DATA_HOME", str(repo)),
        "PYTHONUNBUFFERED": "1",
    })
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "5")
    env.setdefault("PREFECT_WORKER_PREFETCH_SECONDS", "5")
    env.update(extra or {})
    return env


def prefect_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


# --------------------------------------------------------------------------- processes, by PID


def _proc_start_time(pid: int) -> Optional[str]:
    """The kernel's start time of a process (field 22 of /proc/PID/stat), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _ppid(pid: int) -> Optional[int]:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (Linux /proc; empty elsewhere)."""
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    children: dict[int, list[int]] = {}
    for p in pids:
        parent = _ppid(p)
        if parent is not None:
            children.setdefault(parent, []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def is_running(info: dict) -> bool:
    """Whether the process recorded in ``info`` (pid + start time) still runs, and is the same process."""
    pid = info.get("pid")
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not Path("/proc").is_dir():
        return True  # no /proc (not Linux): the PID is all there is to go on
    started = _proc_start_time(pid)
    return started is not None and _alive(pid) and info.get("start_time") in (None, started)


def spawn(name: str, cmd: list[str], env: dict[str, str], log_dir: Path, cwd: Path) -> dict:
    """Start ``cmd`` in its own session (so it can be stopped with its children), output to a log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=str(cwd), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return {"name": name, "pid": proc.pid, "start_time": _proc_start_time(proc.pid), "cmd": cmd, "log": str(log)}


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def stop_process(info: dict, timeout: float = 15.0) -> bool:
    """SIGTERM the recorded process and everything below it, SIGKILL what is left after ``timeout``.

    Returns False when the recorded process was not running (nothing is signalled then)."""
    if not is_running(info):
        return False
    pid = info["pid"]
    # the tree is taken before signalling (orphans are re-parented once their parent exits), each
    # with its start time, so a PID freed and reused meanwhile is never signalled
    tree = [{"pid": p, "start_time": _proc_start_time(p)} for p in descendants(pid)]
    _signal([pid], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    # flow-run processes a worker started in their own session, or anything that ignored SIGTERM
    known = {p["pid"] for p in tree}
    tree += [{"pid": p, "start_time": _proc_start_time(p)} for p in descendants(pid) if p not in known]
    rest = [p for p in tree if is_running(p)]
    _signal([p["pid"] for p in rest], signal.SIGTERM)
    deadline = time.monotonic() + min(timeout, 5.0)
    while time.monotonic() < deadline and any(is_running(p) for p in rest):
        time.sleep(0.1)
    _signal([p["pid"] for p in [info, *rest] if is_running(p)], signal.SIGKILL)
    try:  # reap it when it is our own child (tests, `up` failing half-way)
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return True


def _log_tail(path: str, n: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


# --------------------------------------------------------------------------- the server and its objects


PORT_TRIES = 3


def urls(host: str, port: int) -> dict[str, str]:
    return {"ui_url": f"http://{host}:{port}", "api_url": f"http://{host}:{port}/api"}


def start_server(host: str, port: int, make_env, log_dir: Path, cwd: Path, timeout: float = 180.0, echo=print,
                 on_spawn=None) -> tuple[dict, int]:
    """``prefect server start --host HOST --port PORT`` until it answers /health -> (process info, port).

    ``make_env(api_url)`` gives the server's environment. Port 0 picks a free port, and another one
    when something took it between the choice and the server's bind (the server then exits with
    "address already in use"), up to ``PORT_TRIES`` times."""
    for attempt in range(1 if port else PORT_TRIES):
        chosen = port or free_port(host)
        api_url = urls(host, chosen)["api_url"]
        env = {**make_env(api_url), "PREFECT_SERVER_API_HOST": host, "PREFECT_SERVER_API_PORT": str(chosen),
               "PREFECT_UI_API_URL": api_url}
        info = spawn("server", prefect_cmd("server", "start", "--host", host, "--port", str(chosen), "--analytics-off"),
                     env, log_dir, cwd)
        if on_spawn:
            on_spawn(info, chosen)
        echo(f"prefect server starting (pid {info['pid']}, log {info['log']})")
        try:
            wait_healthy(api_url, timeout, info)
            return info, chosen
        except ServerExited:
            taken = "address already in use" in _log_tail(info["log"]).lower()
            if port or not taken or attempt == PORT_TRIES - 1:
                raise
            echo(f"port {chosen} was taken before the server bound it: trying another")
    raise AssertionError("unreachable")


class ServerExited(RuntimeError):
    """The server process ended before it answered /health."""


def wait_healthy(api_url: str, timeout: float = 120.0, proc: dict | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not is_running(proc):
            raise ServerExited(f"the Prefect server exited; its log ({proc['log']}) ends with:\n{_log_tail(proc['log'])}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the Prefect server at {api_url} did not answer /health within {timeout:.0f} s")


@contextmanager
def api_client(api_url: str) -> Iterator[Any]:
    """A synchronous Prefect client for ``api_url``, whatever this process's own settings say."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        with get_client(sync_client=True) as client:
            yield client


def ensure_pools(api_url: str, gpus: int) -> None:
    """Create or update the CPU and GPU process pools (a GPU pool limit of one flow run per GPU)."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    pools = [
        WorkPoolCreate(name=CPU_POOL, type="process", base_job_template=template,
                       description="CPU work: sources, features annotator, records, shards, publishing."),
        WorkPoolCreate(name=GPU_POOL, type="process", base_job_template=template, concurrency_limit=max(gpus, 1),
                       description="GPU work: model annotators, training, evaluation; one flow run per GPU. "
                                   "Start one worker per GPU: CUDA_VISIBLE_DEVICES=0 prefect worker start "
                                   "--pool mumu-gpu --limit 1 (then 1, 2, ...), or mumu server up --gpu-workers N."),
    ]
    with api_client(api_url) as client:
        for pool in pools:
            client.create_work_pool(pool, overwrite=True)


def ensure_limits(api_url: str, downloads_per_minute: float, gpus: int) -> None:
    """Create or update the global concurrency limits the tasks take.

    ``mumu-downloads``: a rate limit; each download start occupies a slot that decays at
    ``downloads_per_minute / 60`` per second (one slot: no bursts). ``mumu-gpu``: one slot per GPU."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectNotFound

    limits = [
        dict(name=DOWNLOADS_LIMIT, limit=1, slot_decay_per_second=downloads_per_minute / 60.0),
        dict(name=GPU_LIMIT, limit=max(gpus, 1)),
    ]
    with api_client(api_url) as client:
        for spec in limits:
            try:
                client.read_global_concurrency_limit_by_name(spec["name"])
            except ObjectNotFound:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(active=True, **spec))
            else:
                client.update_global_concurrency_limit(spec["name"], GlobalConcurrencyLimitUpdate(active=True, **spec))


DEPLOYMENT_FILES = ("prefect.yaml", "prefect-gpu.yaml")  # CPU deployments; those on the mumu-gpu pool


def deploy_all(env: dict[str, str], repo: Path, log_dir: Path) -> str:
    """``prefect --no-prompt deploy --all`` from prefect.yaml and prefect-gpu.yaml; returns the output."""
    log_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for name in DEPLOYMENT_FILES:
        proc = subprocess.run(prefect_cmd("--no-prompt", "deploy", "--all", "--prefect-file", name), cwd=str(repo),
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
        outputs.append(proc.stdout)
        (log_dir / "deploy.log").write_text("\n".join(outputs))
        if proc.returncode != 0:
            raise RuntimeError(f"prefect deploy --all --prefect-file {name} failed ({proc.returncode}):\n"
                               f"{proc.stdout[-4000:]}")
    return "\n".join(outputs)


# --------------------------------------------------------------------------- up / down / status


def read_state(home: Path) -> Optional[dict]:
    path = state_path(home)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _write_state(home: Path, state: dict) -> None:
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def up(host: str = "127.0.0.1", port: int = 4200, home: Path | None = None, repo: Path | None = None,
       cpu_workers: int = 1, cpu_worker_limit: int | None = 2, gpu_workers: int | None = None,
       downloads_per_minute: float = 30.0, deploy: bool = True, poll_seconds: float | None = None,
       timeout: float = 180.0, echo=print) -> dict:
    """Start server, pools, limits, deployments and workers; return the state (also written to the state file).

    ``port=0`` picks a free port. ``gpu_workers=None``: one per visible GPU. On any failure
    everything started so far is stopped again."""
    repo = Path(repo or repo_dir()).resolve()
    home = Path(home or default_home(repo)).resolve()
    home.mkdir(parents=True, exist_ok=True)
    log_dir = home / "logs"
    existing = read_state(home)
    if existing and is_running(existing.get("server", {})):
        raise RuntimeError(f"a server from {state_path(home)} already runs at {existing['ui_url']} "
                           "(`mumu server down` stops it)")
    if port and port_in_use(host, port):
        raise RuntimeError(f"port {port} on {host} is in use: pick another with --port (0: any free port)")
    gpus = visible_gpus() if gpu_workers is None else gpu_workers
    extra = {"PREFECT_WORKER_QUERY_SECONDS": str(poll_seconds)} if poll_seconds else {}
    state: dict[str, Any] = {"host": host, "home": str(home), "repo": str(repo), "gpus": gpus, "server": {},
                             "workers": [], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    try:
        def server_env(api_url: str) -> dict[str, str]:
            return child_env(home, api_url, repo, extra)

        def record(info: dict, chosen: int) -> None:  # before it is healthy: a failed start is stopped by PID
            state.update(server=info, port=chosen, **urls(host, chosen))
            _write_state(home, state)

        start_server(host, port, server_env, log_dir, repo, timeout, echo, on_spawn=record)
        api_url = state["api_url"]
        env = server_env(api_url)
        ensure_pools(api_url, gpus)
        ensure_limits(api_url, downloads_per_minute, gpus)
        echo(f"work pools {CPU_POOL}, {GPU_POOL}; concurrency limits {DOWNLOADS_LIMIT} "
             f"({downloads_per_minute:g}/min), {GPU_LIMIT} ({max(gpus, 1)})")
        # workers first: they start (imports, registration) while prefect deploy runs
        host_name = socket.gethostname()
        for i in range(cpu_workers):
            name = f"{CPU_POOL}-{host_name}-{i}"
            cmd = prefect_cmd("worker", "start", "--pool", CPU_POOL, "--type", "process", "--name", name)
            if cpu_worker_limit:
                cmd += ["--limit", str(cpu_worker_limit)]
            state["workers"].append({**spawn(f"worker-{CPU_POOL}-{i}", cmd, env, log_dir, repo), "pool": CPU_POOL,
                                     "worker_name": name})
            _write_state(home, state)
        for i, gpu in enumerate(gpu_ids(gpus)):
            name = f"{GPU_POOL}-{host_name}-{gpu}"
            cmd = prefect_cmd("worker", "start", "--pool", GPU_POOL, "--type", "process", "--name", name, "--limit", "1")
            genv = {**env, "CUDA_VISIBLE_DEVICES": gpu}
            state["workers"].append({**spawn(f"worker-{GPU_POOL}-{i}", cmd, genv, log_dir, repo), "pool": GPU_POOL,
                                     "worker_name": name, "gpu": gpu})
            _write_state(home, state)
        if deploy:
            deploy_all(env, repo, log_dir)
            echo(f"deployed prefect.yaml (log {log_dir / 'deploy.log'})")
        for w in state["workers"]:
            if not is_running(w):
                raise RuntimeError(f"worker {w['worker_name']} exited; its log ({w['log']}) ends with:\n{_log_tail(w['log'])}")
        echo(f"workers: {', '.join(w['worker_name'] for w in state['workers']) or 'none'}")
    except BaseException:
        echo("start failed: stopping what was started")
        down(home, echo=lambda *_: None)
        raise
    return state


def down(home: Path | None = None, timeout: float = 15.0, echo=print) -> list[str]:
    """Stop the workers (and their flow runs), then the server, by the PIDs in the state file."""
    home = Path(home or default_home(repo_dir())).resolve()
    state = read_state(home)
    if state is None:
        echo(f"nothing to stop: no {state_path(home)}")
        return []
    stopped = []
    for w in state.get("workers", []):
        if stop_process(w, timeout):
            stopped.append(w["name"])
            echo(f"stopped {w['name']} (pid {w['pid']})")
    server = state.get("server") or {}
    if server and stop_process(server, timeout):
        stopped.append("server")
        echo(f"stopped the Prefect server (pid {server['pid']})")
    state_path(home).unlink(missing_ok=True)
    return stopped


def status(home: Path | None = None) -> dict:
    """What runs: processes, API health, UI URL, pools and their workers, deployments, recent flow runs."""
    home = Path(home or default_home(repo_dir())).resolve()
    state = read_state(home)
    if state is None:
        return {"running": False, "state_file": str(state_path(home))}
    out: dict[str, Any] = {"running": is_running(state.get("server", {})), "state_file": str(state_path(home)),
                           "ui_url": state["ui_url"], "api_url": state["api_url"],
                           "processes": [{"name": p["name"], "pid": p["pid"], "running": is_running(p), "log": p["log"]}
                                         for p in [state.get("server") or {}, *state.get("workers", [])] if p]}
    if not out["running"]:
        return out
    import httpx

    try:
        out["healthy"] = httpx.get(f"{state['api_url']}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        out["healthy"] = False
    if not out["healthy"]:
        return out
    from prefect.client.schemas.sorting import FlowRunSort

    with api_client(state["api_url"]) as client:
        out["pools"] = []
        for name in (CPU_POOL, GPU_POOL):
            try:
                pool = client.read_work_pool(name)
            except Exception:
                continue
            workers = client.read_workers_for_work_pool(name)
            out["pools"].append({"name": name, "type": pool.type, "status": str(getattr(pool.status, "value", pool.status)),
                                 "concurrency_limit": pool.concurrency_limit,
                                 "workers_online": sum(1 for w in workers if str(getattr(w.status, "value", w.status)) == "ONLINE")})
        flows = {f.id: f.name for f in client.read_flows()}
        out["deployments"] = sorted(f"{flows.get(d.flow_id, '?')}/{d.name}" for d in client.read_deployments())
        out["flow_runs"] = [{"name": r.name, "flow": flows.get(r.flow_id, "?"), "state": r.state_name}
                            for r in client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=5)]
        out["limits"] = [{"name": lim.name, "limit": lim.limit, "active_slots": lim.active_slots,
                          "slot_decay_per_second": lim.slot_decay_per_second}
                         for lim in client.read_global_concurrency_limits()]
    return out


# --------------------------------------------------------------------------- the commands

HomeOpt = typer.Option(None, "--home", help="PREFECT_HOME: database, logs, state file (default: $PREFECT_HOME or <repo>/.prefect).")


@app.command("up")
def up_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Address the server listens on."),
    port: int = typer.Option(4200, "--port", help="Server port (0: any free port)."),
    home: Optional[Path] = HomeOpt,
    cpu_workers: int = typer.Option(1, "--cpu-workers", help=f"Process workers on {CPU_POOL}."),
    cpu_limit: int = typer.Option(2, "--cpu-limit", help="Flow runs at once per CPU worker (0: no limit)."),
    gpu_workers: Optional[int] = typer.Option(None, "--gpu-workers", help=f"Workers on {GPU_POOL}, one per GPU (default: one per visible GPU)."),
    downloads_per_minute: float = typer.Option(30.0, "--downloads-per-minute", help=f"Rate of the {DOWNLOADS_LIMIT} limit."),
    deploy: bool = typer.Option(True, "--deploy/--no-deploy", help="Run `prefect deploy --all` from prefect.yaml."),
    poll: Optional[float] = typer.Option(None, "--poll", help="Seconds between worker polls (default 5)."),
) -> None:
    """Start a local Prefect server (SQLite, analytics off), pools, limits, deployments and workers."""
    try:
        state = up(host, port, home, None, cpu_workers, cpu_limit or None, gpu_workers, downloads_per_minute, deploy, poll,
                   echo=typer.echo)
    except (RuntimeError, TimeoutError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1)
    typer.echo(f"\nPrefect UI: {state['ui_url']}\nfor every shell that talks to it:\n"
               f"  export PREFECT_API_URL={state['api_url']}\n"
               f"run a deployment: prefect deployment run build-mucaps/mucaps-demo\nstop: mumu server down")


@app.command("down")
def down_cmd(home: Optional[Path] = HomeOpt,
             timeout: float = typer.Option(15.0, "--timeout", help="Seconds to wait after SIGTERM before SIGKILL.")) -> None:
    """Stop the workers, then the server (by the PIDs in the state file)."""
    down(home, timeout, echo=typer.echo)


@app.command("status")
def status_cmd(home: Optional[Path] = HomeOpt,
               as_json: bool = typer.Option(False, "--json", help="Print the status as JSON.")) -> None:
    """Show what runs, the UI URL, pools, deployments and the latest flow runs."""
    st = status(home)
    if as_json:
        typer.echo(json.dumps(st, indent=2, default=str))
        raise typer.Exit(0 if st["running"] else 1)
    if "ui_url" not in st:
        typer.echo(f"not running (no {st['state_file']})")
        raise typer.Exit(1)
    typer.echo(f"Prefect UI: {st['ui_url']}   API: {st['api_url']}   "
               f"({'healthy' if st.get('healthy') else 'not answering' if st['running'] else 'server stopped'})")
    for p in st["processes"]:
        typer.echo(f"  {p['name']:<24} pid {p['pid']:<8} {'running' if p['running'] else 'stopped':<8} {p['log']}")
    for pool in st.get("pools", []):
        typer.echo(f"  pool {pool['name']:<10} {pool['type']:<8} {pool['status']:<10} workers online: "
                   f"{pool['workers_online']}  limit: {pool['concurrency_limit']}")
    for lim in st.get("limits", []):
        decay = f", decays {lim['slot_decay_per_second']:g}/s" if lim["slot_decay_per_second"] else ""
        typer.echo(f"  limit {lim['name']:<16} {lim['active_slots']}/{lim['limit']} slots{decay}")
    if st.get("deployments"):
        typer.echo("  deployments: " + ", ".join(st["deployments"]))
    for r in st.get("flow_runs", []):
        typer.echo(f"  run {r['flow']}/{r['name']}: {r['state']}")
    if not st["running"]:
        raise typer.Exit(1)


@app.command("env")
def env_cmd(home: Optional[Path] = HomeOpt) -> None:
    """Print the exports that point a shell at the running server: eval "$(mumu server env)"."""
    home = Path(home or default_home(repo_dir())).resolve()
    state = read_state(home)
    if state is None:
        typer.echo(f"# not running (no {state_path(home)})", err=True)
        raise typer.Exit(1)
    typer.echo(f"export PREFECT_API_URL={state['api_url']}\nexport PREFECT_HOME={state['home']}\n"
               "export PREFECT_SERVER_ANALYTICS_ENABLED=false")


if __name__ == "__main__":  # pragma: no cover
    app()
