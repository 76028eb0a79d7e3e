"""MUCaps records: each captioned clip gives two conversations.

* music captioning: the human asks the MU-LLaMA question with the clip as input; the model
  answers with the caption;
* text to music: the human asks, in words from the bundled instruction pool, for music that
  matches the caption; the model answers with a short hand-over line and the clip as output.
"""

from __future__ import annotations

from annotators.prompts import pick, pool, prompt
from mumu.config import Config
from schemas.datasets import MUCAPS
from tasks.records import assign, media_cell, provenance, records_table, turns
from tasks.stage import ShardResult, run_shard
from tasks.store import Store, fingerprint_of


def prompt_versions() -> dict[str, str]:
    return {"music_question": prompt("music_question").version, "mucaps_generate": pool("mucaps_generate").version,
            "music_response": pool("music_response").version}


def mucaps_records_shard(store: Store, cfg: Config, clips_part: str, captions_part: str, excluded: frozenset[str]):
    clips = {c["clip_id"]: c for c in store.read_table(clips_part).to_pylist()}
    captions = [a for a in store.read_table(captions_part).to_pylist() if a["kind"] == "music_caption"]
    question = prompt("music_question").lines()[0]
    asks, replies = pool("mucaps_generate").lines(), pool("music_response").lines()
    rows, failures = [], []
    for ann in captions:
        clip = clips.get(ann["clip_id"])
        if clip is None:
            failures.append({"item_id": ann["clip_id"], "stage": "records/MUCaps", "reason": "orphan_annotation",
                             "detail": "a caption whose clip is not in the clips shard"})
            continue
        if clip.get("quality_ok") is False:
            failures.append({"item_id": clip["clip_id"], "stage": "records/MUCaps", "reason": "below_quality",
                             "detail": "; ".join(clip["quality_reasons"])})
            continue
        split = assign(clip, cfg.splits.eval_fraction, cfg.splits.seed, excluded)
        if split is None:
            failures.append({"item_id": clip["clip_id"], "stage": "records/MUCaps", "reason": "decontaminated",
                             "detail": f"{clip['group_id']} is on the decontamination list"})
            continue
        audio = media_cell(store, clip["audio_path"])
        base = {**provenance(clip, ann), "audio": audio, "caption": ann["text"], "split": split}
        rows.append({**base, "id": f"{clip['clip_id']}-caption", "task": "music_captioning",
                     "conversation": turns(question, ann["text"]), "input_modality": "audio", "output_modality": "text"})
        ask = pick(asks, clip["clip_id"], salt="mucaps_generate").format(caption=ann["text"])
        reply = pick(replies, clip["clip_id"], salt="music_response")
        rows.append({**base, "id": f"{clip['clip_id']}-generate", "task": "text_to_music",
                     "conversation": turns(ask, reply), "input_modality": "text", "output_modality": "audio"})
    return records_table(MUCAPS, rows), failures


def records_shard(store: Store, cfg: Config, clips: ShardResult, captions: ShardResult, excluded: frozenset[str]) -> ShardResult:
    fp = fingerprint_of("records/MUCaps", clips.fingerprint, captions.fingerprint, cfg.splits.eval_fraction,
                        cfg.splits.seed, sorted(excluded), prompt_versions())
    return run_shard(store, "records/MUCaps", clips.shard, fp, captions.ok,
                     lambda: mucaps_records_shard(store, cfg, clips.output, captions.output, excluded))
