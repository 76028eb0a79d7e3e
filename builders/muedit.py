"""MUEdit records: edit pairs with instructions that agree with the applied edit.

Loops (Looperman) give speed and pitch pairs as the loop plan says (``builders.edit_plan``): one
edit per loop, the whole loop, speed and pitch loops disjoint and balanced over categories, a
speed factor (``speed_factor`` = output duration / input duration) or a pitch shift in cents.
Slakh multitracks give add / delete / replace pairs over spans (``slakh.pair_span``): the whole
track, or segments of ``slakh.clip_seconds``. For each span the valid stem edits
(``builders.edits.stem_edit_options``) that touch only stems whose instrument is unique in the track
(so the words name exactly the edited part) and whose stems are audible for at least
``slakh.min_active_ratio`` of the span are candidates, and ``edits.stem_edits_per_span`` of them
are chosen by a hash of the span id. Replace means: input = the other stems + stem X of
instrument A, output = the other stems + stem Y of instrument B, A != B, both from the same
track. One track's stems are in memory at a time.

The human turn is the instruction and the model turn the response, templates filled with the
edit's own parameters (``builders.edit_text.fields``): with an LLM text role, from the instruction
and response pools that role wrote in this build (``builders.pools.EDIT_POOLS``), drawn with the
build's seed among the templates whose filled text agrees with the edit (``agreeing_templates``;
an edit that no template describes becomes a failure row); with the CPU ``features`` role, from
the bundled templates. The two are never mixed.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np

from builders.edit_plan import read_plan
from builders.edit_text import agreeing_templates, fields, fill, instruction, instrument_label, template_version
from builders.edits import apply_edit, stem_edit_options
from builders.pools import EDIT_OPS, EDIT_POOLS, draw, pool_entries, pool_fingerprint, uses_generated_pools
from builders.records import (
    MediaRef,
    clip_media,
    eligible,
    exclusion_key,
    records_table,
    turns,
    write_media,
)
from mumu.config import Config
from mumu.failures import Failure, ItemError
from mumu.media import MediaError, decode_audio_bytes, flac_bytes
from mumu.stage import ShardResult, run_shard
from mumu.store import Store, fingerprint_of
from schemas.datasets import MUEDIT
from sources.slakh import active_ratio, plan_segments

EDITOR = {"annotator": "templates", "model": "bundled-pools"}
EDITS_DIR = "media/edits"  # the audio the edits make, one file per record side, embedded by the final assembly


class NoWording(ItemError):
    """An edit that no instruction of the build's pools describes."""


class EditWording:
    """The two turns of an edit record and their provenance: from the build's generated pools
    (an LLM text role) or from the bundled templates (the ``features`` role)."""

    def __init__(self, store: Store, cfg: Config):
        self.generated = uses_generated_pools(cfg)
        self.seed = cfg.seed
        self.entries = {name: pool_entries(store, cfg, name) for name in EDIT_POOLS} if self.generated else {}
        self.writer = {"backend": cfg.annotators.text.backend, "model": cfg.annotators.text.model}
        self._memo: dict[tuple[str, str], list] = {}
        self.versions = {op: "+".join(pool_fingerprint(store, cfg, f"edit_{op}{k}") for k in ("", "_response"))
                         for op in EDIT_OPS} if self.generated else {}

    def _agreeing(self, name: str, op: str, params: dict) -> list:
        """The pool's entries whose filled text agrees with this edit (kept per pool and parameters:
        loops share a handful of speed and pitch values)."""
        key = (name, json.dumps(params, sort_keys=True))
        if key not in self._memo:
            entries = self.entries[name]
            agreeing = set(agreeing_templates(op, [e.text for e in entries], [params]))
            self._memo[key] = [e for e in entries if e.text in agreeing]
        return self._memo[key]

    def turns(self, op: str, params: dict, key: str) -> tuple[str, str, dict]:
        """(instruction, response, provenance columns); NoWording when the pools have nothing for it."""
        if not self.generated:
            human, model = instruction(op, params, key)
            return human, model, {**EDITOR, "prompt_version": template_version(op), "roles": None}
        values = fields(op, params)
        picked = {}
        for role, name in (("instruction", f"edit_{op}"), ("response", f"edit_{op}_response")):
            entries = self.entries[name]
            if not entries:
                raise NoWording("no_instruction_pool", f"the text role wrote no {name!r} pool in this build")
            usable = self._agreeing(name, op, params)
            if not usable:
                raise NoWording("no_agreeing_template", f"none of the {len(entries)} {name} templates describes {params}")
            picked[role] = draw(usable, f"{key}:{role}", self.seed)
        roles = {role: {**self.writer, "pool": e.pool, "entry": e.entry} for role, e in picked.items()}
        return (fill(picked["instruction"].text, values), fill(picked["response"].text, values),
                {"annotator": self.writer["backend"], "model": self.writer["model"], "prompt_version": self.versions[op],
                 "roles": json.dumps(roles, sort_keys=True)})


def _record(rid: str, op: str, params: dict, clip: dict, split: str, inp: MediaRef, out: MediaRef, start: float,
            seconds: float, words: tuple[str, str, dict]) -> dict:
    human, model, prov = words
    return {
        "id": rid, "task": f"edit_{op}", "conversation": turns(human, model), "input_modality": "audio",
        "output_modality": "audio", "operation": op, "params": params, "input_audio": inp, "output_audio": out,
        "clip_id": clip["clip_id"], "group_id": clip["group_id"], "source": clip["source"], "origin": clip["origin"],
        "start_s": start, "end_s": start + seconds, "input_seconds": seconds, "tags": clip["tags"], "licence": clip["licence"],
        **prov, "split": split,
    }


def _edited(store: Store, audio: np.ndarray, sr: int, name: str) -> MediaRef:
    """An edit's audio, written once as a media file (``media/edits/<name>``) and referenced."""
    return write_media(store, f"{EDITS_DIR}/{name}", flac_bytes(np.atleast_2d(audio), sr))


def loop_edit_records(store: Store, cfg: Config, clips_part: str, plan: dict[str, dict]):
    """The planned edit of each loop of a clips shard (``plan``: ``builders.edit_plan.read_plan``; a loop
    the plan filtered out or did not need gets none) -> (records table, failures)."""
    rows, failures = [], []
    wording = EditWording(store, cfg)
    for clip in store.read_table(clips_part).to_pylist():
        cid = clip["clip_id"]
        planned = plan.get(cid)
        if planned is None:
            continue
        op, params, rid = planned["operation"], planned["params"], planned["record_id"]
        y, sr = decode_audio_bytes(store.read_bytes(store.path(clip["audio_path"])))
        try:
            pair = apply_edit(op, y, sr, params)
            words = wording.turns(op, pair.params, rid)
            rows.append(_record(rid, op, pair.params, clip, planned["split"], clip_media(store, clip, "audio"),
                                _edited(store, pair.output, sr, f"{rid}.flac"), 0.0, clip["duration_s"], words))
        except (MediaError, ValueError) as e:
            failures.append(Failure(getattr(e, "reason", "edit_failed"), str(e)).row(rid, "records/MUEdit"))
        except NoWording as e:
            failures.append(e.row(rid, "records/MUEdit"))
    return records_table(MUEDIT, rows), failures


def _pick(options: list, key: str, n: int) -> list:
    ranked = sorted(options, key=lambda o: hashlib.sha256(f"{key}:{json.dumps(o, sort_keys=True)}".encode()).hexdigest())
    return ranked[:n]


def stem_edit_records(store: Store, cfg: Config, clips_part: str, excluded: frozenset[str]):
    """Add / delete / replace pairs for every Slakh track of a clips shard -> (records table, failures)."""
    rows, failures = [], []
    wording = EditWording(store, cfg)
    clips = store.read_table(clips_part).to_pylist()
    tracks: dict[str, list[dict]] = {}
    for c in clips:
        tracks.setdefault(c["group_id"], []).append(c)
    whole = cfg.slakh.pair_span == "track"
    for track, parts in sorted(tracks.items()):
        mix_clip = next((c for c in parts if c["clip_id"].endswith("-mix")), None)
        stem_clips = {json.loads(c["meta"])["stem_id"]: c for c in parts if not c["clip_id"].endswith("-mix")}
        if mix_clip is None or len(stem_clips) < 2:
            failures.append(Failure("too_few_stems", f"{track}: {len(stem_clips)} stems")
                            .row(f"sl-{track}", "records/MUEdit"))
            continue
        gated = list(eligible([mix_clip], cfg.splits, excluded, "records/MUEdit", failures,
                              item_id=lambda _, t=track: f"sl-{t}"))
        if not gated:
            continue
        split = gated[0][1]
        meta = json.loads(mix_clip["meta"])
        names = {sid: meta["stems"][sid]["inst_class"] for sid in stem_clips}
        audio, sr = {}, None
        for sid, c in stem_clips.items():
            y, sr = decode_audio_bytes(store.read_bytes(store.path(c["audio_path"])))
            audio[sid] = y[0] if y.shape[0] == 1 else y
        n = min(a.shape[-1] for a in audio.values())
        # an edit names instruments, so each stem it touches must be the only one of its instrument
        # in the track: "remove the guitar" is false while a second guitar plays on
        counts = Counter(instrument_label(v) for v in names.values())
        unique = {sid for sid, v in names.items() if counts[instrument_label(v)] == 1}
        options = [(op, p) for op, p in stem_edit_options(names)
                   if all(p[key] in unique for key in ("stem", "keep", "stem_out") if key in p)]
        if whole:  # the whole track: every stem cut to the shortest, no copies
            audio = {sid: y[..., :n] for sid, y in audio.items()}
            spans = [(f"sl-{track}", 0, n)]
        else:
            step = int(round(cfg.slakh.clip_seconds * sr))
            spans = [(f"sl-{track}-seg{k:02d}", int(round(start * sr)), int(round(start * sr)) + step)
                     for k, (start, _end) in enumerate(plan_segments(n / sr, cfg.slakh.clip_seconds))]
        for seg_id, a, b in spans:
            seg = audio if whole else {sid: np.ascontiguousarray(y[..., a:b]) for sid, y in audio.items()}
            start, seconds = a / sr, (b - a) / sr
            audible = {sid for sid, y in seg.items() if active_ratio(y, sr, 0.0, seconds) >= cfg.slakh.min_active_ratio}
            usable = [(op, p) for op, p in options
                      if all(p[key] in audible for key in ("stem", "keep", "stem_out") if key in p)]
            if not usable:
                failures.append(Failure("edited_stem_silent", f"no stem edit of {seg_id} has audible stems")
                                .row(seg_id, "records/MUEdit"))
                continue
            for op, p in _pick(usable, seg_id, cfg.edits.stem_edits_per_span):
                rid = f"{seg_id}-{op}-" + "-".join(f"{key}{p[key]}" for key in sorted(p))
                try:
                    pair = apply_edit(op, seg, sr, p, names=names)
                except (MediaError, ValueError) as e:
                    failures.append(Failure(getattr(e, "reason", "edit_failed"), str(e)).row(rid, "records/MUEdit"))
                    continue
                try:
                    words = wording.turns(op, pair.params, rid)
                    rows.append(_record(rid, op, pair.params, mix_clip, split, _edited(store, pair.input, sr, f"{rid}-in.flac"),
                                        _edited(store, pair.output, sr, f"{rid}-out.flac"), start, seconds, words))
                except NoWording as e:
                    failures.append(e.row(rid, "records/MUEdit"))
    return records_table(MUEDIT, rows), failures


def edit_records_shard(store: Store, cfg: Config, clips: ShardResult, kind: str, excluded: frozenset[str],
                       plan: ShardResult | None = None) -> ShardResult:
    """Run (or skip) the MUEdit record stage for one clips shard of loops (``plan``: the loop plan
    stage's result, ``builders.edit_plan.loop_plan_stage``) or of Slakh tracks."""
    if kind == "loops":
        if plan is None:
            raise ValueError("the loops' record stage needs the loop plan (builders.edit_plan.loop_plan_stage)")
        ids = store.read_table(clips.output, columns=["clip_id"]).column("clip_id").to_pylist() if clips.ok else []
        mine = read_plan(store, plan, ids)
        build, planned = (lambda: loop_edit_records(store, cfg, clips.output, mine)), sorted(mine.items())
    else:
        build, planned = (lambda: stem_edit_records(store, cfg, clips.output, excluded)), None
    if uses_generated_pools(cfg):
        wording = {"writer": [cfg.annotators.text.backend, cfg.annotators.text.model], "seed": cfg.seed,
                   **{name: pool_fingerprint(store, cfg, name) for name in EDIT_POOLS}}
    else:
        wording = {op: template_version(op) for op in EDIT_OPS}
    fp = fingerprint_of(f"records/MUEdit/{kind}", clips.fingerprint, cfg.edits.model_dump(), cfg.slakh.model_dump(),
                        cfg.splits.eval_fraction, cfg.splits.seed, exclusion_key(excluded), wording, planned)
    return run_shard(store, f"records/MUEdit-{kind}", clips.shard, fp, clips.ok, build)
