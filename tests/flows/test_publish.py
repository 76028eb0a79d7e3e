"""Publishing to a loopback Hub: exactly the folder's files arrive, byte-identical; a second publish
makes no commit; a rebuild commits only the difference; the token never shows up anywhere."""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from mumu.config import load_config
from mumu.stage import ShardResult
from mumu.store import Store
from publishing import publish as pub
from publishing.finalize import finalize_dataset
from schemas.datasets import MUCAPS
from tests.helpers import write_parts
from tests.support.hub_server import HubServer

TOKEN = f"hf_test_{uuid.uuid4().hex}"
PROV = {"pipeline_version": "t", "profile": "sample", "config_hash": "h", "annotators": {}, "prompt_versions": {},
        "sources": ["sample"]}
REPO = "mumu-test/MUCaps"


def build(root: Path, max_shard_bytes: int) -> Path:
    store = Store(str(root))
    parts = write_parts(store, 2, 6)
    results = [ShardResult("records/MUCaps", i, 6, 6, 0, False, f"fp{i}", p, p + ".missing") for i, p in enumerate(parts)]
    cfg = load_config("sample", {"shards.max_shard_bytes": max_shard_bytes, "shards.max_row_group_bytes": 6_000})
    finalize_dataset(store, cfg, MUCAPS, results, [], PROV)
    out = root / "datasets" / "MUCaps"
    assert (out / "figures" / "durations.png").exists()  # finalize draws the card's figures
    return out


@pytest.fixture(scope="module")
def builds(tmp_path_factory) -> dict[str, Path]:
    """The same records assembled twice: one file per split, then several (a rebuild that renames shards)."""
    root = tmp_path_factory.mktemp("publish")
    return {"one": build(root / "one", 10**9), "many": build(root / "many", 15_000)}


@pytest.fixture
def dataset(builds, tmp_path) -> Path:
    out = tmp_path / "MUCaps"
    shutil.copytree(builds["one"], out)
    return out


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the loopback Hub speaks LFS, not Xet
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored login from this machine
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-home" / "stored_tokens"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with HubServer(token=TOKEN) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server
    assert server.unrouted == []  # huggingface_hub called nothing the loopback Hub lacks


def local_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def writes(hub: HubServer) -> list:
    return [r for r in hub.requests() if r[0] in ("POST", "PUT") and "validate-yaml" not in r[1]]


def test_dry_run_then_publish_then_nothing(hub, dataset):
    plan = pub.publish(str(dataset), REPO, dry_run=True).plan
    assert not plan.repo_exists and not plan.unchanged and not plan.delete
    assert [e.path for e in plan.add] == sorted(local_bytes(dataset))
    assert writes(hub) == [] and (("dataset", REPO) not in hub.repos)
    assert "repo will be created" in plan.text() and "add       data/train-00000-of-00001.parquet" in plan.text()

    res = pub.publish(str(dataset), REPO)
    assert res.committed and res.commit_message == "Publish MUCaps (mumu publish)"
    remote = hub.files(REPO)
    assert remote.pop(".gitattributes")  # the Hub's own, from repo creation
    assert remote == local_bytes(dataset)  # exactly these files, byte-identical
    lfs = {p for p, b in hub.repo(REPO).resolve("main").files.items() if b.lfs_oid}
    assert lfs == {p for p in remote if p.endswith((".parquet", ".png"))}  # media through LFS, text as git blobs
    assert len(hub.requests("PUT", r"^/lfs/upload/")) == len(lfs)
    assert [c.title for c in hub.commits(REPO)] == ["Publish MUCaps (mumu publish)", "initial commit"]
    assert hub.tokens_seen == {TOKEN}

    n = len(hub.log)
    again = pub.publish(str(dataset), REPO)
    assert again.plan.empty and not again.committed and again.commit_oid is None
    assert len(again.plan.unchanged) == len(remote)
    assert len(hub.commits(REPO)) == 2  # no new commit
    assert [r for r in hub.log[n:] if r[0] != "GET"] == []  # and nothing uploaded or written at all

    # what the Hub serves is what was built (downloaded the way `datasets` would)
    path = hf_hub_download(REPO, "data/train-00000-of-00001.parquet", repo_type="dataset",
                           cache_dir=str(dataset.parent / "cache"), endpoint=hub.url, token=TOKEN)
    assert Path(path).read_bytes() == (dataset / "data" / "train-00000-of-00001.parquet").read_bytes()


def test_a_rebuild_commits_only_the_difference(hub, builds, dataset):
    pub.publish(str(dataset), REPO)
    before = set(hub.lfs)
    shutil.rmtree(dataset / "data")
    shutil.copytree(builds["many"] / "data", dataset / "data")
    for name in ("README.md", "stats.json"):
        shutil.copy(builds["many"] / name, dataset / name)

    old, new = (set(local_bytes(builds[k] / "data")) for k in ("one", "many"))
    assert len(new) > len(old) and old - new

    plan = pub.publish(str(dataset), REPO, dry_run=True).plan
    assert {e.path for e in plan.delete} == {f"data/{p}" for p in old - new}
    same = {f"data/{p}" for p in old & new if (builds["one"] / "data" / p).read_bytes() == (dataset / "data" / p).read_bytes()}
    assert {e.path for e in plan.add} == {f"data/{p}" for p in new} - same | {"README.md", "stats.json"}
    figures = {f"figures/{p.name}" for p in (dataset / "figures").glob("*.png")}
    assert figures and {e.path for e in plan.unchanged} == {"LICENSE.md"} | figures | same

    n = len(hub.log)
    res = pub.publish(str(dataset), REPO)
    assert res.committed and len(hub.commits(REPO)) == 3
    remote = hub.files(REPO)
    remote.pop(".gitattributes")
    assert remote == local_bytes(dataset)  # stale shards gone, new ones byte-identical
    new_objects = set(hub.lfs) - before
    assert {r[1].rsplit("/", 1)[-1] for r in hub.log[n:] if r[0] == "PUT"} == new_objects  # only new bytes travel
    assert "png" not in str(hub.log[n:])  # the unchanged figure was not re-sent


def test_branch_private_repo_and_parent_guard(hub, dataset):
    res = pub.publish(str(dataset), REPO, revision="v2", private=True)
    assert res.committed and res.private is True and res.repo_url.endswith("/tree/v2")
    assert set(hub.files(REPO, "main")) == {".gitattributes"}  # main untouched
    assert set(hub.files(REPO, "v2")) - {".gitattributes"} == set(local_bytes(dataset))
    with pytest.raises(RepositoryNotFoundError):  # private: invisible without the token
        HfApi(endpoint=hub.url, token=False).repo_info(REPO, repo_type="dataset")

    # someone commits between plan and commit: the commit is refused, not merged blindly
    (dataset / "LICENSE.md").write_text("changed\n")
    plan = pub.plan_publish(str(dataset), REPO, revision="v2", token=TOKEN)
    HfApi(endpoint=hub.url, token=TOKEN).upload_file(path_or_fileobj=b"x", path_in_repo="other.txt", repo_id=REPO,
                                                     repo_type="dataset", revision="v2")
    with pytest.raises(HfHubHTTPError) as err:
        pub.execute_plan(plan, token=TOKEN)
    assert err.value.response.status_code == 412
    assert "other.txt" in hub.files(REPO, "v2") and hub.files(REPO, "v2")["LICENSE.md"] != b"changed\n"
    assert "other.txt" not in {e.path for e in pub.plan_publish(str(dataset), REPO, revision="v2").delete}  # unmanaged


def test_no_token_no_writes(hub, dataset, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    assert pub.resolve_token() is None
    assert pub.publish(str(dataset), REPO, dry_run=True).plan.add  # planning needs no token for a public/missing repo
    with pytest.raises(PermissionError, match="HF_TOKEN"):
        pub.publish(str(dataset), REPO)
    assert writes(hub) == [] and hub.tokens_seen == set()


# --- through Prefect --------------------------------------------------------------------
class Collect(logging.Handler):
    """Every log record of the process, formatted with its arguments and traceback."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()} {record.exc_text or ''}")


def prefect_records(flow_run_id) -> dict[str, str]:
    """Everything the Prefect API keeps about a flow run, as text: parameters, task runs, logs, artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {
        "flow run": run.model_dump_json(),
        "task runs": json.dumps([t.model_dump(mode="json") for t in tasks]),
        "logs": "\n".join(f"{l.name} {l.message}" for l in logs),
        "artifacts": json.dumps([a.model_dump(mode="json") for a in arts]),
    }


@pytest.mark.slow
def test_flow_names_the_run_and_never_shows_the_token(hub, dataset, prefect_harness, capfd, monkeypatch):
    from prefect.blocks.system import Secret

    from flows.publish import publish_hub

    collected = Collect()
    for name in ("", "prefect", "huggingface_hub", "httpx", "httpx2", "flows", "tasks"):
        logger = logging.getLogger(name)
        logger.addHandler(collected)
        if name:  # every level, debug included: not even debug logs may carry it (whatever ran before)
            monkeypatch.setattr(logger, "level", logging.DEBUG)
            monkeypatch.setattr(logger, "disabled", False)
    # earlier tests may have configured logging (Prefect's dictConfig disables existing loggers, CLI runs
    # set WARNING): switch every logger under these names back on, at debug level
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in ("prefect", "huggingface_hub", "httpx", "httpx2",
                                                                          "flows", "tasks", "httpcore"):
            monkeypatch.setattr(logger, "disabled", False)
            monkeypatch.setattr(logger, "level", logging.DEBUG)
    state = publish_hub(dataset_dir=str(dataset), repo_id=REPO, return_state=True)
    out = state.result()
    run_id = state.state_details.flow_run_id
    records = prefect_records(run_id)
    assert out["committed"]
    head = hub.commits(REPO)[0]
    assert str(run_id) in head.title and head.title.startswith("Publish MUCaps (flow run ")
    assert "to add" in records["logs"] and "committed" in records["logs"]
    arts = json.loads(records["artifacts"])
    assert {a["type"] for a in arts} >= {"table", "markdown"}
    table = next(a for a in arts if a["type"] == "table")
    assert "data/train-00000-of-00001.parquet" in json.dumps(table["data"])
    link = next(a for a in arts if a["key"] and a["key"].endswith("-repo"))
    assert f"/datasets/{REPO}" in link["data"]
    first = min(arts, key=lambda a: a["created"])  # the summary: the Hub URL as text, the folder, the outcome
    assert first["key"] == f"publish-hub-{REPO.lower().replace('/', '-')}-summary" and first["type"] == "markdown"
    assert f"```\n{out['repo_url']}\n```" in first["data"] and f"```\n{dataset}\n```" in first["data"]
    assert "committed [" in first["data"]
    assert set(json.loads(records["flow run"])["parameters"]) == {"dataset_dir", "repo_id", "private", "revision",
                                                                  "dry_run", "token_secret_block"}

    # the second run takes the token from a Secret block; the data is unchanged, so no commit
    block_token = f"hf_block_{uuid.uuid4().hex}"
    Secret(value=block_token).save("mumu-test-hf-token", overwrite=True)
    monkeypatch.delenv("HF_TOKEN")
    hub.token = block_token
    state2 = publish_hub(dataset_dir=str(dataset), repo_id=REPO, token_secret_block="mumu-test-hf-token",
                         return_state=True)
    assert state2.result()["committed"] is False and len(hub.commits(REPO)) == 2
    assert block_token in hub.tokens_seen
    records2 = prefect_records(state2.state_details.flow_run_id)
    assert "nothing changed" in records2["logs"]

    for name in ("", "prefect", "huggingface_hub", "httpx", "httpx2", "flows", "tasks"):
        logging.getLogger(name).removeHandler(collected)
    captured = capfd.readouterr()
    logs = "\n".join(collected.lines)
    assert "publish-hub" in logs  # the handler did see the run (HTTP debug lines too, unless an earlier test silenced them)
    for secret in (TOKEN, block_token):
        for name, text in [*records.items(), *records2.items(), ("python logs", logs),
                           ("stdout", captured.out), ("stderr", captured.err)]:
            assert secret not in text, f"the token leaked into {name}"


@pytest.mark.slow
def test_cli_dry_run_prints_the_plan(hub, dataset, prefect_harness, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from cli.publish import publish

    app = typer.Typer()
    app.command("publish")(publish)
    app.command("noop")(lambda: None)  # two commands, so `publish` is a subcommand as in mumu
    res = CliRunner().invoke(app, ["publish", str(dataset), "--repo", REPO, "--dry-run"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "dry run" in res.output and "data/train-00000-of-00001.parquet" in res.output
    n_files = sum(1 for p in dataset.rglob("*") if p.is_file())
    assert f"{n_files} to add" in res.output and writes(hub) == []
    with monkeypatch.context() as m:
        m.delenv("HF_TOKEN")
        res = CliRunner().invoke(app, ["publish", str(dataset), "--repo", REPO], terminal_width=200)
        assert res.exit_code == 1 and "HF_TOKEN" in res.output and writes(hub) == []
    res = CliRunner().invoke(app, ["publish", str(dataset), "--repo", REPO], terminal_width=200)
    assert res.exit_code == 0 and "committed" in res.output, res.output
    res = CliRunner().invoke(app, ["publish", str(dataset), "--repo", REPO], terminal_width=200)
    assert res.exit_code == 0 and "no commit made" in res.output, res.output
    assert len(hub.commits(REPO)) == 2


def test_a_dataset_url_publishes_like_its_local_folder(hub, dataset, tmp_path, monkeypatch):
    """A dataset in a bucket (memory:// stands in for s3://) is copied to the local cache once and
    published; the Hub then holds the same bytes as when the local folder is published."""
    import fsspec

    monkeypatch.setenv("MUMU_LOCAL_CACHE", str(tmp_path / "cache"))
    fs = fsspec.filesystem("memory")
    url = f"memory://bucket-{uuid.uuid4().hex[:8]}/datasets/MUCaps"
    fs.put(str(dataset), url.removeprefix("memory:/"), recursive=True)
    try:
        res = pub.publish(url, REPO)
        assert res.committed and res.commit_message == "Publish MUCaps (mumu publish)"
        assert res.plan.dataset_dir.startswith(str(tmp_path / "cache"))
        remote = hub.files(REPO)
        remote.pop(".gitattributes")
        assert remote == local_bytes(dataset)
        assert pub.publish(str(dataset), REPO).plan.empty  # the local folder: nothing left to commit
        with pytest.raises(FileNotFoundError, match="not a folder"):
            pub.publish(url + "-missing", REPO, dry_run=True)
    finally:
        fs.rm(url.removeprefix("memory:/").split("/datasets")[0], recursive=True)
