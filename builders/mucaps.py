"""MUCaps records: each captioned clip gives two conversations.

* music captioning: the human asks the MU-LLaMA question with the clip as input; the model
  answers with the caption;
* text to music: the human asks for music that matches the caption, in words from the build's
  instruction pool (written by an LLM text role in this build; the bundled pool on CPU); the model
  turn is the text role's reply (a bundled hand-over line on CPU), with the clip as output.
"""

from __future__ import annotations

import json

from annotators.base import Request, annotator_for
from annotators.features import instruments_from_tags
from annotators.prompts import pick, pool, prompt
from builders.pools import draw, pool_entries, pool_fingerprint, uses_generated_pools
from builders.records import clip_media, eligible, exclusion_key, provenance, records_table, turns
from mumu.config import Config
from mumu.failures import Failure
from mumu.stage import ShardResult, run_shard
from mumu.store import Store, fingerprint_of
from schemas.datasets import MUCAPS


def prompt_versions() -> dict[str, str]:
    return {"music_question": prompt("music_question").version, "mucaps_generate": pool("mucaps_generate").version,
            "music_response": pool("music_response").version}


def mucaps_records_shard(store: Store, cfg: Config, clips_part: str, captions_part: str, excluded: frozenset[str],
                         members: list[str] | None = None):
    """MUCaps records for the clips of a shard that MUCaps draws (``members``; None: all of them)."""
    clips = {c["clip_id"]: c for c in store.read_table(clips_part).to_pylist()}
    captions = [a for a in store.read_table(captions_part).to_pylist() if a["kind"] == "music_caption"]
    if members is not None:  # the shard's other clips belong to other datasets' draws
        keep = set(members)
        captions = [a for a in captions if a["clip_id"] in keep]
    question = prompt("music_question").lines()[0]
    llm = uses_generated_pools(cfg)
    entries = pool_entries(store, cfg, "text_to_music") if llm else []
    asks, replies = pool("mucaps_generate").lines(), pool("music_response").lines()
    rows, failures, matched = [], [], []
    for ann in captions:
        clip = clips.get(ann["clip_id"])
        if clip is None:
            failures.append(Failure("orphan_annotation", "a caption whose clip is not in the clips shard")
                            .row(ann["clip_id"], "records/MUCaps"))
            continue
        matched.append((clip, ann))
    todo = [(clip, ann, split) for (clip, ann), split in
            eligible(matched, cfg.splits, excluded, "records/MUCaps", failures, clip_of=lambda m: m[0])]
    # text to music: with an LLM text role the human turn is a line of the pool it wrote in this
    # build followed by the caption, and the model turn is the text role's reply; on CPU, both
    # come from the bundled pools
    answers: dict[str, tuple[str, str, dict]] = {}
    if llm and todo:
        writer = annotator_for("text", cfg, store)
        ident = writer.identity()
        if not entries:
            for clip, _, _ in todo:
                failures.append(Failure("no_instruction_pool", "the text role wrote no 'text' instruction pool in this build")
                                .row(clip["clip_id"], "records/MUCaps"))
        else:
            drawn = {clip["clip_id"]: draw(entries, clip["clip_id"], cfg.seed) for clip, _, _ in todo}
            asks_of = {clip["clip_id"]: f"{drawn[clip['clip_id']].text} {ann['text'].strip()}" for clip, ann, _ in todo}
            reqs = [Request(clip["clip_id"], "response", tags=instruments_from_tags(clip["tags"]),
                            context={"task": "text_to_music", "instruction": asks_of[clip["clip_id"]],
                                     "music_caption": ann["text"], "modality": "text"}) for clip, ann, _ in todo]
            for r in writer.annotate(reqs):
                if r.text is None:
                    failures.append(Failure(r.error_reason or "annotation_failed", r.error_detail or "")
                                    .row(r.clip_id, "records/MUCaps"))
                    continue
                e = drawn[r.clip_id]
                text_role = {"backend": ident["annotator"], "model": ident["model"]}
                answers[r.clip_id] = (asks_of[r.clip_id], r.text, {
                    "instruction": {**text_role, "pool": e.pool, "entry": e.entry},
                    "response": {**text_role, "prompt_version": r.prompt_version or writer.prompt_version}})
    for clip, ann, split in todo:
        cid = clip["clip_id"]
        audio = clip_media(store, clip, "audio")
        caption_role = {"backend": ann["annotator"], "model": ann["model"], "prompt_version": ann["prompt_version"]}
        base = {**provenance(clip, ann), "audio": audio, "caption": ann["text"], "split": split}
        rows.append({**base, "id": f"{cid}-caption", "task": "music_captioning",
                     "roles": json.dumps({"music_caption": caption_role}, sort_keys=True),
                     "conversation": turns(question, ann["text"]), "input_modality": "audio", "output_modality": "text"})
        if llm:
            if cid not in answers:
                continue  # its failure row is written above
            ask, reply, text_roles = answers[cid]
        else:
            template = pick(asks, cid, salt="mucaps_generate")
            ask = template.format(caption=ann["text"])
            reply = pick(replies, cid, salt="music_response")
            text_roles = {"instruction": {"backend": "features", "model": "bundled-pools",
                                          "pool": f"bundled:mucaps_generate@{pool('mucaps_generate').version}",
                                          "entry": asks.index(template)},
                          "response": {"backend": "features", "model": "bundled-pools",
                                       "pool": f"bundled:music_response@{pool('music_response').version}",
                                       "entry": replies.index(reply)}}
        rows.append({**base, "id": f"{cid}-generate", "task": "text_to_music",
                     "roles": json.dumps({"music_caption": caption_role, **text_roles}, sort_keys=True),
                     "conversation": turns(ask, reply), "input_modality": "text", "output_modality": "audio"})
    return records_table(MUCAPS, rows), failures


def records_shard(store: Store, cfg: Config, clips: ShardResult, captions: ShardResult, excluded: frozenset[str],
                  members: list[str] | None = None) -> ShardResult:
    text = annotator_for("text", cfg, store).identity() if uses_generated_pools(cfg) else None
    fp = fingerprint_of("records/MUCaps", clips.fingerprint, captions.fingerprint, cfg.splits.eval_fraction,
                        cfg.splits.seed, exclusion_key(excluded), prompt_versions(), text, cfg.seed,
                        pool_fingerprint(store, cfg, "text_to_music"), None if members is None else sorted(members))
    n = captions.ok if members is None else len(members)
    return run_shard(store, "records/MUCaps", clips.shard, fp, n,
                     lambda: mucaps_records_shard(store, cfg, clips.output, captions.output, excluded, members))
