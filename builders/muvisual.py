"""MUImage and MUVideo records: an image (or video) in, the clip's music out.

Each clip with a music caption and an image (video) caption gives one conversation: the human
turn is an instruction from the task's pool ("Generate music to match the image."), with the
still (video) as input; the model turn is the reply of the ``text`` annotator, which integrates
the ground-truth tags, the music caption and the image (video) caption, with the clip's audio as
output. The ``text`` role's backend decides who writes them: bundled pools on CPU, an LLM
(vLLM / OpenAI-compatible) on GPU workers.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from annotators.base import Request, annotator_for
from annotators.features import instruments_from_tags
from builders.pools import POOL_OF_TASK, draw, pool_entries, pool_fingerprint, uses_generated_pools
from builders.records import clip_media, eligible, exclusion_key, provenance, records_table, turns
from mumu.config import Config
from mumu.failures import Failure
from mumu.stage import ShardResult, run_shard
from mumu.store import Store, fingerprint_of
from schemas.datasets import MUIMAGE, MUVIDEO, DatasetSpec


class VisualKind(NamedTuple):
    """What tells MUImage and MUVideo apart."""

    task: str  # the records' task, and the instruction pool they draw from
    modality: str  # the human turn's input modality
    role: str  # the annotator role that captions the medium
    column: str  # the clips table's column holding the medium's path
    spec: DatasetSpec


KINDS = {
    "MUImage": VisualKind("image_to_music", "image", "image_caption", "image_path", MUIMAGE),
    "MUVideo": VisualKind("video_to_music", "video", "video_caption", "video_path", MUVIDEO),
}


def _by_clip(store: Store, part: str, kind: str) -> dict[str, dict]:
    return {a["clip_id"]: a for a in store.read_table(part).to_pylist() if a["kind"] == kind}


def role_of(annotation: dict) -> dict:
    """The provenance of one annotation row (a caption) for a record's ``roles``."""
    return {"backend": annotation["annotator"], "model": annotation["model"], "prompt_version": annotation["prompt_version"]}


def visual_records_table(store: Store, cfg: Config, dataset: str, clips_part: str, music_part: str, visual_part: str,
                   excluded: frozenset[str], members: list[str] | None = None):
    """The dataset's records for the clips of a shard that it draws (``members``; None: all)."""
    task, modality, role, column, spec = KINDS[dataset]  # a VisualKind
    stage = f"records/{dataset}"
    music = _by_clip(store, music_part, "music_caption")
    visual = _by_clip(store, visual_part, role)
    writer = annotator_for("text", cfg, store)
    llm = uses_generated_pools(cfg)
    entries = pool_entries(store, cfg, task) if llm else []
    todo, failures = [], []
    keep = None if members is None else set(members)
    # another dataset's clips are not this one's; a clip without both captions: the caption stages
    # already recorded why
    captioned = (c for c in store.read_table(clips_part).to_pylist() if (keep is None or c["clip_id"] in keep)
                 and c["clip_id"] in music and c["clip_id"] in visual)
    for clip, split in eligible(captioned, cfg.splits, excluded, stage, failures):
        cid = clip["clip_id"]
        if llm and not entries:
            failures.append(Failure("no_instruction_pool", f"the text role wrote no {POOL_OF_TASK[task][0]!r} instruction pool in this build")
                            .row(cid, stage))
            continue
        todo.append((clip, split))
    requests, drawn = [], {}
    for clip, _ in todo:
        cid = clip["clip_id"]
        ctx = {"task": task, "music_caption": music[cid]["text"], role: visual[cid]["text"], "modality": modality}
        if llm:
            # the human turn from the build's pool; the model turn written by the text role from the
            # tags ("music" and "musical instrument" dropped, as the reference does) and both captions
            drawn[cid] = draw(entries, cid, cfg.seed)
            ctx.update(instruction=drawn[cid].text, visual_caption=visual[cid]["text"])
            requests.append(Request(cid, "response", tags=instruments_from_tags(clip["tags"]), context=ctx))
        else:
            ctx["tags"] = clip["tags"]
            requests += [Request(cid, "instruction", tags=clip["tags"], context=ctx),
                         Request(cid, "response", tags=clip["tags"], context=ctx)]
    texts: dict[tuple[str, str], str] = {(cid, "instruction"): e.text for cid, e in drawn.items()}
    versions: dict[tuple[str, str], str] = {}
    for r in writer.annotate(requests):
        if r.text is None:
            failures.append(Failure(r.error_reason or "annotation_failed", r.error_detail or "").row(r.clip_id, stage))
        else:
            texts[(r.clip_id, r.kind)] = r.text
            versions[(r.clip_id, r.kind)] = r.prompt_version or writer.prompt_version
    ident = writer.identity()
    text_role = {"backend": ident["annotator"], "model": ident["model"]}
    rows = []
    for clip, split in todo:
        cid = clip["clip_id"]
        if (cid, "instruction") not in texts or (cid, "response") not in texts:
            continue
        m, v = music[cid], visual[cid]
        if cid in drawn:
            instruction = {"pool": drawn[cid].pool, "entry": drawn[cid].entry, **text_role}
        else:
            instruction = {**text_role, "prompt_version": versions[(cid, "instruction")], "pool": "bundled"}
        roles = {"music_caption": role_of(m), role: role_of(v), "instruction": instruction,
                 "response": {**text_role, "prompt_version": versions[(cid, "response")]}}
        rows.append({
            **provenance(clip, m),
            "annotator": f"{m['annotator']}+{v['annotator']}+{ident['annotator']}",
            "model": f"{m['model']}+{v['model']}+{ident['model']}",
            "prompt_version": f"{m['prompt_version']}+{v['prompt_version']}+{ident['prompt_version']}",
            "roles": json.dumps(roles, sort_keys=True),
            "id": f"{cid}-{task}", "task": task, "conversation": turns(texts[(cid, "instruction")], texts[(cid, "response")]),
            "input_modality": modality, "output_modality": "audio",
            modality: clip_media(store, clip, modality), "audio": clip_media(store, clip, "audio"),
            role: v["text"], "music_caption": m["text"], "split": split,
        })
    return records_table(spec, rows), failures


def visual_records_shard(store: Store, cfg: Config, dataset: str, clips: ShardResult, music: ShardResult,
                         visual: ShardResult, excluded: frozenset[str], members: list[str] | None = None) -> ShardResult:
    writer = annotator_for("text", cfg, store)
    fp = fingerprint_of(f"records/{dataset}", clips.fingerprint, music.fingerprint, visual.fingerprint, writer.identity(),
                        cfg.splits.eval_fraction, cfg.splits.seed, exclusion_key(excluded), cfg.seed,
                        pool_fingerprint(store, cfg, KINDS[dataset].task), None if members is None else sorted(members))
    return run_shard(store, f"records/{dataset}", clips.shard, fp, min(music.ok, visual.ok),
                     lambda: visual_records_table(store, cfg, dataset, clips.output, music.output, visual.output, excluded,
                                            members))


def spec_of(dataset: str) -> DatasetSpec:
    return KINDS[dataset].spec
