"""publish-hub: a built dataset folder -> a Hugging Face Hub dataset repo, in one commit or none.

Two tasks: ``hub-plan`` compares the folder with the remote revision (read only, retried),
``hub-commit`` creates the repo / branch if needed and makes the plan's commit (not retried: a
lost response must not become a second commit; rerunning the flow replans and finds nothing to do).
The token is resolved inside each task from ``token_secret_block`` (a Prefect Secret block, picked
in the UI, or its name) or else ``HF_TOKEN``: the token itself is never a flow or task parameter (a
block parameter is stored as a reference to the block), never returned, never logged.
Artifacts: a summary first (the Hub URL as text and as a link, the folder, the host and run, the
outcome), then the plan as a table and a link to the repo.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.blocks.system import Secret
from prefect.runtime import flow_run
from pydantic import Field

from flows.report import artifact_key as _key
from flows.report import start_summary, update_artifact
from flows.retries import IO_RETRIES
from flows.runners import default_task_runner
from publishing import publish as pub

# the Hub repo id: owner/name, as the Hub allows it
RepoId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")]


def _token(secret: Secret | str | None) -> str | None:
    """The Hub token of a Secret block (the block itself or its name), else ``HF_TOKEN``'s."""
    if isinstance(secret, Secret):
        value = secret.get()
        return str(value) if value else None
    return pub.resolve_token(secret)


def _ref(secret: Secret | str | None) -> Secret | str | None:
    """What the tasks get: a saved block's name (so no task input holds the block), else the value."""
    name = getattr(secret, "_block_document_name", None) if isinstance(secret, Secret) else None
    return name or secret


@task(name="hub-plan", **IO_RETRIES)
def hub_plan(dataset_dir: str, repo_id: str, revision: str | None, token_secret_block: Secret | str | None) -> pub.PublishPlan:
    return pub.plan_publish(dataset_dir, repo_id, revision=revision, token=_token(token_secret_block))


@task(name="hub-commit")
def hub_commit(plan: pub.PublishPlan, private: bool, token_secret_block: Secret | str | None, message: str) -> pub.PublishResult:
    return pub.execute_plan(plan, token=_token(token_secret_block), private=private, commit_message=message)


def run_label() -> str:
    """``flow run <name> <id>`` inside a Prefect run, else the CLI's name."""
    name, run_id = flow_run.get_name(), flow_run.get_id()
    return f"flow run {name} {run_id}" if run_id else "mumu publish"


@flow(name="publish-hub", task_runner=default_task_runner(), log_prints=False)
def publish_hub(dataset_dir: str, repo_id: RepoId, private: bool = False, revision: str | None = None,
                dry_run: bool = False, token_secret_block: Secret | str | None = None) -> dict:
    """Publish a built dataset folder to a Hugging Face Hub dataset repo, in one commit or none.
    Publishing unchanged data makes no commit; a dry run only plans (the plan is an artifact).

    Args:
        dataset_dir: The built dataset folder, e.g. data/sample/datasets/MUCaps or s3://bucket/mumu/datasets/MUCaps.
        repo_id: The dataset repo on the Hub, owner/name, e.g. my-org/MUCaps.
        private: Create the repo private (only applies when the repo is created).
        revision: The branch to commit to; unset: main (a missing branch is created).
        dry_run: Only plan: compare the folder with the repo and write nothing.
        token_secret_block: The Prefect Secret block holding the Hub token (pick one, or create it with
            prefect block create secret), or the block's name; unset: the worker's HF_TOKEN.
    """
    log = get_run_logger()
    token_secret_block = _ref(token_secret_block)
    # the run's first artifact: what goes where; filled in with the Hub URL and the outcome at the end
    summary = start_summary(repo_id, dataset_dir, key=_key(f"publish-hub-{repo_id}"),
                            pending="Publishing: the Hub URL and the outcome appear here when the run ends.",
                            description="the Hub URL, the folder published and the outcome")
    plan = hub_plan(dataset_dir, repo_id, revision, token_secret_block)
    c = plan.counts()
    log.info("%s@%s: %d to add (%d bytes), %d to delete, %d unchanged", repo_id, plan.revision, c["add"],
             c["bytes to upload"], c["delete"], c["unchanged"])
    if dry_run:
        result = pub.PublishResult(plan, pub.repo_url(repo_id, plan.revision), dry_run=True)
    else:
        result = hub_commit(plan, private, token_secret_block, pub.commit_message_for(plan.dataset_dir, run_label()))
        if private and result.private is False:
            log.warning("%s already exists and is public: --private only applies when the repo is created", repo_id)
    if result.committed:
        outcome = f"committed [{result.commit_oid[:12]}]({result.commit_url}): {result.commit_message}"
    elif dry_run:
        outcome = "dry run: nothing was written"
    else:
        outcome = "nothing changed: no commit made"
    log.info("%s", outcome)
    update_artifact(summary.artifact_id, "\n".join([
        f"# Publish {repo_id}@{plan.revision}", "", "On the Hub:", "", "```", result.repo_url, "```", "",
        f"[{repo_id} on the Hub]({result.repo_url})", "", "Published from:", "", "```", summary.location, "```", "",
        f"Published by host `{summary.host}`, flow run `{summary.run_id}`.", "", "## Outcome", "", outcome, "",
        "| add | delete | unchanged | bytes to upload |", "| ---: | ---: | ---: | ---: |",
        f"| {c['add']} | {c['delete']} | {c['unchanged']} | {c['bytes to upload']} |"]) + "\n")
    create_table_artifact(plan.rows() or [{"action": "none", "path": "no files"}], key=f"{summary.prefix}-plan",
                          description=f"{'Dry run: ' if dry_run else ''}plan for {repo_id}@{plan.revision}, per file")
    create_link_artifact(result.repo_url, link_text=f"{repo_id} on the Hub", key=f"{summary.prefix}-repo")
    log.info("%s: %s", repo_id, result.repo_url)
    return result.to_dict()
