"""Publish a built dataset folder to the Hugging Face Hub: plan, then one commit (or none).

The plan compares every local file with the remote tree of the target revision by content:
an LFS file by its sha256 (the LFS oid the tree lists), a regular file by its git blob sha1.
Files that differ or are missing remotely are added; remote files under the managed folders
(``data/`` and ``figures/`` by default) that no longer exist locally are deleted (a rebuild with
more shards renames ``train-00000-of-00002`` to ``...-of-00003``); everything else is unchanged.
An empty plan makes no request that writes: publishing unchanged data makes no new commit.

The upload is one ``HfApi.create_commit`` with explicit ``CommitOperationAdd`` /
``CommitOperationDelete`` operations, chosen over the alternatives of the installed
huggingface_hub (2.x):

* ``upload_folder`` uploads the whole folder and relies on the server's preupload oids to drop
  unchanged files; with ``hf_xet`` installed it goes through a streamed multi-commit pipeline, so
  one publish can become several commits, and its deletions are glob patterns, not a reviewed
  list. There is no plan to show before anything happens.
* ``upload_large_folder`` is built for resumable multi-commit uploads of huge folders: no commit
  message of ours, no deletions, never atomic.
* ``create_commit`` takes exactly the operations of our plan, so the dry run shows exactly what
  the commit will do; the card, its ``configs`` file list and the shards it names change in one
  atomic commit; ``parent_commit`` makes it fail instead of silently merging when someone else
  committed after the plan was made; and when the plan is empty it is not called at all.
  Large files still go through the recommended transport: Xet when ``hf_xet`` is installed, LFS
  otherwise (``create_commit`` picks, as ``upload_folder`` does).

After a commit the remote tree is listed again and must match the local folder, file by file.

The token comes from ``HF_TOKEN`` (or huggingface_hub's stored login) or a Prefect Secret block,
is resolved where it is used, and is never a parameter of a flow or task, never returned and never
logged.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

REPO_TYPE = "dataset"
DEFAULT_BRANCH = "main"
MANAGED = ("data/*", "figures/*")  # remote files here that the folder no longer has are deleted
SKIP_PREFIXES = (".tmp-", ".")  # temporaries of the store, hidden files (.git, .cache...)
HASH_CHUNK = 8 * 2**20


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative, posix
    size: int
    sha256: str
    git_sha1: str  # the git blob id the file would have as a regular (non-LFS) file


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None = None


@dataclass(frozen=True)
class PlanEntry:
    path: str
    action: str  # add | delete | unchanged
    reason: str  # new | changed | gone locally | same content
    size: int
    sha256: str | None = None


@dataclass
class PublishPlan:
    dataset_dir: str
    repo_id: str
    revision: str
    repo_exists: bool
    branch_exists: bool
    parent_commit: str | None  # head of the revision when planned (None: repo or branch still to create)
    base_commit: str | None = None  # the commit the remote listing came from (a new branch starts here)
    entries: list[PlanEntry] = field(default_factory=list)
    local: dict[str, LocalFile] = field(default_factory=dict, repr=False)  # the hashes the plan was made from
    managed: tuple[str, ...] = MANAGED  # remote paths the plan may delete

    @property
    def add(self) -> list[PlanEntry]:
        return [e for e in self.entries if e.action == "add"]

    @property
    def delete(self) -> list[PlanEntry]:
        return [e for e in self.entries if e.action == "delete"]

    @property
    def unchanged(self) -> list[PlanEntry]:
        return [e for e in self.entries if e.action == "unchanged"]

    @property
    def empty(self) -> bool:
        """Nothing to commit (the repo and branch may still need creating)."""
        return not self.add and not self.delete

    def counts(self) -> dict[str, int]:
        return {"add": len(self.add), "delete": len(self.delete), "unchanged": len(self.unchanged),
                "bytes to upload": sum(e.size for e in self.add)}

    def rows(self) -> list[dict]:
        """One row per file, for tables (CLI, Prefect artifact)."""
        order = {"add": 0, "delete": 1, "unchanged": 2}
        return [{"action": e.action, "path": e.path, "reason": e.reason, "bytes": e.size,
                 "sha256": (e.sha256 or "")[:12]} for e in sorted(self.entries, key=lambda e: (order[e.action], e.path))]

    def text(self) -> str:
        c = self.counts()
        head = [f"plan for {self.repo_id}@{self.revision} from {self.dataset_dir}",
                f"  repo {'exists' if self.repo_exists else 'will be created'}"
                + ("" if self.branch_exists or not self.repo_exists else f"; branch {self.revision} will be created"),
                f"  {c['add']} to add ({c['bytes to upload']} bytes), {c['delete']} to delete, {c['unchanged']} unchanged"]
        body = [f"  {r['action']:<9} {r['path']}  ({r['reason']}, {r['bytes']} bytes)" for r in self.rows()]
        return "\n".join(head + body)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k not in ("entries", "local")}, "counts": self.counts(),
                "files": self.rows()}


@dataclass
class PublishResult:
    plan: PublishPlan
    repo_url: str
    dry_run: bool
    committed: bool = False
    commit_oid: str | None = None
    commit_url: str | None = None
    commit_message: str | None = None
    private: bool | None = None

    def to_dict(self) -> dict:
        return {"repo_url": self.repo_url, "dry_run": self.dry_run, "committed": self.committed,
                "commit_oid": self.commit_oid, "commit_url": self.commit_url, "commit_message": self.commit_message,
                "private": self.private, "plan": self.plan.to_dict()}


# the token ------------------------------------------------------------------------------
def resolve_token(secret_block: str | None = None) -> str | None:
    """The Hub token: the named Prefect Secret block if one is named, else ``HF_TOKEN`` (or the
    token ``huggingface_hub`` stored at login), else None. Never log what this returns."""
    if secret_block:
        from prefect.blocks.system import Secret

        try:
            value = Secret.load(secret_block).get()
        except ValueError as e:
            raise ValueError(f"no Prefect Secret block named {secret_block!r}: create it (prefect block create secret) "
                             "or leave the name out to use HF_TOKEN") from e
        return str(value) if value else None
    return os.environ.get("HF_TOKEN") or get_token() or None


def hub_endpoint(endpoint: str | None = None) -> str:
    """The Hub URL: the argument, else ``HF_ENDPOINT`` as set now, else huggingface_hub's default."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def repo_url(repo_id: str, revision: str | None = None, endpoint: str | None = None) -> str:
    base = f"{hub_endpoint(endpoint)}/datasets/{repo_id}"
    return base if not revision or revision == DEFAULT_BRANCH else f"{base}/tree/{quote(revision, safe='')}"


# local and remote files -----------------------------------------------------------------
def hash_file(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) in one pass over the file."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % size)
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def local_folder(dataset_dir: str | os.PathLike) -> str:
    """The folder to publish on this machine: ``dataset_dir`` itself, or for a URL (``s3://...``)
    its copy under the store's local cache (``Store.local_path``: fetched once, again where an
    object changed); the upload then streams from local files."""
    from mumu.store import Store

    store = Store(str(dataset_dir))
    if store.is_local:
        return store.root
    if not store.fs.isdir(store.root):
        raise FileNotFoundError(f"{dataset_dir} is not a folder")
    return store.local_path(store.root)


def local_files(dataset_dir: str | os.PathLike) -> dict[str, LocalFile]:
    """Every file of the folder to publish, by relative path; hidden files and temporaries skipped."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or any(part.startswith(SKIP_PREFIXES) for part in rel.split("/")):
            continue
        sha256, sha1 = hash_file(p)
        out[rel] = LocalFile(rel, p.stat().st_size, sha256, sha1)
    return out


def remote_state(api: HfApi, repo_id: str, revision: str) -> tuple[bool, bool, str | None, dict[str, RemoteFile]]:
    """(repo exists, revision exists, commit listed, files). A missing revision of an existing repo
    reads as the head of the default branch, which it would be created from."""
    try:
        info = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=revision)
        branch_exists = True
    except RepositoryNotFoundError:
        return False, False, None, {}
    except RevisionNotFoundError:
        info = api.repo_info(repo_id, repo_type=REPO_TYPE, revision=DEFAULT_BRANCH)
        branch_exists = False
    files = {}
    for f in api.list_repo_tree(repo_id, repo_type=REPO_TYPE, revision=info.sha, recursive=True):
        if hasattr(f, "blob_id"):  # a file, not a folder
            files[f.path] = RemoteFile(f.path, f.size, f.blob_id, f.lfs.sha256 if f.lfs else None)
    return True, branch_exists, info.sha, files


def same_content(local: LocalFile, remote: RemoteFile) -> bool:
    if remote.lfs_sha256:
        return remote.lfs_sha256 == local.sha256 and remote.size == local.size
    return remote.blob_id == local.git_sha1


# plan and publish -----------------------------------------------------------------------
def make_plan(dataset_dir: str, repo_id: str, revision: str, local: dict[str, LocalFile], repo_exists: bool,
              branch_exists: bool, base: str | None, remote: dict[str, RemoteFile],
              managed: tuple[str, ...] = MANAGED) -> PublishPlan:
    """The plan from the two listings (a pure function)."""
    entries = []
    for path, lf in sorted(local.items()):
        rf = remote.get(path)
        if rf is None:
            entries.append(PlanEntry(path, "add", "new", lf.size, lf.sha256))
        elif not same_content(lf, rf):
            entries.append(PlanEntry(path, "add", "changed", lf.size, lf.sha256))
        else:
            entries.append(PlanEntry(path, "unchanged", "same content", lf.size, lf.sha256))
    for path, rf in sorted(remote.items()):
        if path not in local and any(fnmatch.fnmatchcase(path, pat) for pat in managed):
            entries.append(PlanEntry(path, "delete", "gone locally", rf.size, rf.lfs_sha256))
    return PublishPlan(str(dataset_dir), repo_id, revision, repo_exists, branch_exists,
                       base if branch_exists else None, base, entries, dict(local), tuple(managed))


def plan_publish(dataset_dir: str, repo_id: str, *, revision: str | None = None, token: str | None = None,
                 endpoint: str | None = None, managed: tuple[str, ...] = MANAGED) -> PublishPlan:
    """Compare the folder with the remote revision; writes nothing anywhere."""
    revision = revision or DEFAULT_BRANCH
    api = HfApi(endpoint=hub_endpoint(endpoint), token=token or False)
    dataset_dir = local_folder(dataset_dir)
    local = local_files(dataset_dir)
    exists, branch_exists, base, remote = remote_state(api, repo_id, revision)
    return make_plan(str(dataset_dir), repo_id, revision, local, exists, branch_exists, base, remote, managed)


def commit_message_for(dataset_dir: str, run: str | None = None) -> str:
    """``Publish MUCaps (flow run <name> <id>)``; outside Prefect ``Publish MUCaps (mumu publish)``."""
    name = Path(dataset_dir).name
    try:
        name = json.loads((Path(dataset_dir) / "stats.json").read_text())["dataset"]
    except (OSError, ValueError, KeyError):
        pass
    return f"Publish {name} ({run or 'mumu publish'})"


def commit_description_for(dataset_dir: str, plan: PublishPlan) -> str:
    lines = []
    try:
        stats = json.loads((Path(dataset_dir) / "stats.json").read_text())
        prov = stats.get("provenance", {})
        lines += [f"dataset fingerprint: {stats.get('fingerprint', '?')}",
                  f"pipeline: mumu-data {prov.get('pipeline_version', '?')}, profile {prov.get('profile', '?')}, "
                  f"config hash {prov.get('config_hash', '?')}",
                  "splits: " + ", ".join(f"{k} {v.get('num_examples')}" for k, v in stats.get("splits", {}).items())]
    except (OSError, ValueError):
        pass
    c = plan.counts()
    lines.append(f"files: {c['add']} added or changed, {c['delete']} deleted, {c['unchanged']} unchanged")
    return "\n".join(lines)


def execute_plan(plan: PublishPlan, *, token: str | None, private: bool = False, endpoint: str | None = None,
                 commit_message: str | None = None, commit_description: str | None = None,
                 verify: bool = True) -> PublishResult:
    """Create the repo / branch if needed and make the plan's one commit (none for an empty plan)."""
    if not token:
        raise PermissionError("publishing needs a Hub token: set HF_TOKEN or name a Prefect Secret block")
    api = HfApi(endpoint=hub_endpoint(endpoint), token=token)
    result = PublishResult(plan, repo_url(plan.repo_id, plan.revision, endpoint), dry_run=False)
    parent = plan.parent_commit
    if not plan.repo_exists:
        api.create_repo(plan.repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    if plan.revision != DEFAULT_BRANCH and not plan.branch_exists:
        # from the commit the plan was made against, so the plan still holds
        api.create_branch(plan.repo_id, branch=plan.revision, repo_type=REPO_TYPE, revision=plan.base_commit,
                          exist_ok=True)
    info = api.repo_info(plan.repo_id, repo_type=REPO_TYPE, revision=plan.revision)
    result.private = info.private
    parent = parent or info.sha  # just created: the head the new repo or branch starts from
    if plan.empty:
        return result
    root = Path(plan.dataset_dir)
    ops = [CommitOperationDelete(path_in_repo=e.path) for e in plan.delete]
    ops += [CommitOperationAdd(path_in_repo=e.path, path_or_fileobj=str(root / e.path)) for e in plan.add]
    message = commit_message or commit_message_for(plan.dataset_dir)
    info = api.create_commit(plan.repo_id, ops, repo_type=REPO_TYPE, revision=plan.revision, parent_commit=parent,
                             commit_message=message,
                             commit_description=commit_description or commit_description_for(plan.dataset_dir, plan))
    result.committed = info.oid != parent
    result.commit_oid, result.commit_url, result.commit_message = info.oid, info.commit_url, message
    if verify:  # the new remote tree against the hashes the plan was made from (a file that changed meanwhile shows)
        after = make_plan(plan.dataset_dir, plan.repo_id, plan.revision, plan.local,
                          *remote_state(api, plan.repo_id, plan.revision), managed=plan.managed)
        if not after.empty:
            raise RuntimeError(f"after the commit the Hub still differs from {plan.dataset_dir} as planned:\n"
                               f"{after.text()}")
    return result


def publish(dataset_dir: str, repo_id: str, *, private: bool = False, revision: str | None = None,
            dry_run: bool = False, token: str | None = None, endpoint: str | None = None,
            commit_message: str | None = None, managed: tuple[str, ...] = MANAGED) -> PublishResult:
    """Plan, then (unless ``dry_run``) execute. ``token`` defaults to :func:`resolve_token`."""
    token = token or resolve_token()
    plan = plan_publish(dataset_dir, repo_id, revision=revision, token=token, endpoint=endpoint, managed=managed)
    if dry_run:
        return PublishResult(plan, repo_url(repo_id, plan.revision, endpoint), dry_run=True)
    return execute_plan(plan, token=token, private=private, endpoint=endpoint, commit_message=commit_message)
