"""The source stage for a local AudioSet mirror: segments -> work shards -> clips parts."""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass, field

from builders.draws import Draw, draw_datasets
from builders.selection import SelectionReport, select_segments
from mumu.config import Config
from mumu.stage import ShardResult, chunk, run_shard
from mumu.store import Store, file_identity, fingerprint_of
from sources.audioset import Segment, read_segments
from sources.clips import AUDIOSET_LICENCE, ingest_audioset_shard
from sources.ontology import ontology
from sources.parquet_mirror import ingest_parquet_shard, plan_parquet_mirror
from sources.sample_corpus import CORPUS_DIR

SAMPLE_LICENCE = "synthetic sample corpus (rendered from generated MIDI); AudioSet ontology label ids CC BY-SA 4.0"


@dataclass
class Mirror:
    segments_csv: list[str]
    media_dir: str | None
    licence: str
    ground_truth: dict[str, dict] = field(default_factory=dict)
    is_sample: bool = False
    parquet: list[str] = field(default_factory=list)  # a Parquet / HF dataset mirror instead of a folder


def sample_corpus_paths(store: Store) -> tuple[str, str, str]:
    base = store.path(CORPUS_DIR)
    return f"{base}/balanced_train_segments.csv", f"{base}/media", f"{base}/ground_truth.jsonl"


def uses_sample_mirror(cfg: Config) -> bool:
    """True when the AudioSet clips come from the sample corpus: no real mirror, and the profile says so."""
    return not (cfg.mirror.segments_csv or cfg.mirror.parquet) and cfg.mirror.sample


def resolve_mirror(cfg: Config, store: Store) -> Mirror:
    """The mirror named in the config, or the sample corpus inside the store (``mirror.sample``)."""
    licence = cfg.mirror.licence or AUDIOSET_LICENCE
    if cfg.mirror.parquet:
        return Mirror([], None, licence, parquet=list(cfg.mirror.parquet))
    if cfg.mirror.segments_csv:
        if not cfg.mirror.media_dir:
            raise ValueError("mirror.segments_csv is set but mirror.media_dir is not: say where the media files are")
        for p in cfg.mirror.segments_csv:
            if not os.path.exists(p):
                raise FileNotFoundError(f"segments CSV {p} does not exist")
        return Mirror(list(cfg.mirror.segments_csv), cfg.mirror.media_dir, licence)
    if not cfg.mirror.sample:
        raise ValueError("mirror.segments_csv is not set (and mirror.sample is false): name a real AudioSet mirror")
    csv_path, _, _ = sample_corpus_paths(store)
    if not store.exists(csv_path):
        raise FileNotFoundError(f"no sample corpus at {store.url_of(posixpath.dirname(csv_path))}: "
                                "run `mumu sample-corpus` first")
    local = store.local_path(store.path(CORPUS_DIR))  # the folder itself, or its copy on this machine
    csv_path, media_dir, gt_path = (os.path.join(local, n) for n in ("balanced_train_segments.csv", "media",
                                                                      "ground_truth.jsonl"))
    truth = {}
    if os.path.exists(gt_path):
        for line in open(gt_path, encoding="utf-8"):
            if line.strip():
                d = json.loads(line)
                truth[d["stem"]] = d
    return Mirror([csv_path], media_dir, SAMPLE_LICENCE, truth, is_sample=True)


@dataclass
class AudiosetPlan:
    """What the AudioSet datasets build: the clips of every dataset's draw (sorted by clip id; each
    is ingested and music-captioned once, for all of them), each dataset's draw, the rows of the
    lists that could not be read, and the selection report."""

    items: list[dict]
    draws: dict[str, Draw]
    failures: list[dict]
    selection: SelectionReport

    def members(self, dataset: str) -> frozenset[str]:
        return self.draws[dataset].members


def plan_audioset(mirror: Mirror, cfg: Config, excluded: frozenset[str] = frozenset()) -> AudiosetPlan:
    """Select the mirror's segments (``builders.selection``) and draw each AudioSet dataset's clips
    from them (``builders.draws``)."""
    lists, failures, extra = {}, [], {}
    if mirror.parquet:
        planned, failures = plan_parquet_mirror(cfg)
        lists["parquet"] = [Segment.from_item(it) for it in planned]
        extra = {it["clip_id"]: {"file": it["file"], "row": it["row"]} for it in planned}
    for path in mirror.segments_csv:
        segs, fails = read_segments(path)
        failures += fails
        lists[os.path.basename(path)] = segs
    rows, report = select_segments(lists, ontology(), cfg.selection, excluded)
    failures += report.failures  # segments listed again in another list (the first listing is taken)
    draws = draw_datasets(rows, cfg, lists_read=set(lists))
    drawn = frozenset().union(*(d.members for d in draws.values()))
    by_id: dict[str, Segment] = {}
    for segs in lists.values():  # the first listing, as select_segments took it
        for s in segs:
            by_id.setdefault(s.clip_id, s)
    items = []
    for r in rows:  # sorted by clip id; a segment listed twice is taken once
        if r["clip_id"] not in drawn or (items and items[-1]["clip_id"] == r["clip_id"]):
            continue
        items.append({**by_id[r["clip_id"]].to_item(), "clip_id": r["clip_id"], "split": r["split"],
                      **extra.get(r["clip_id"], {})})
    report.counts["drawn"] = len(items)
    return AudiosetPlan(items, draws, failures, report)


def work_shards(items: list[dict], cfg: Config) -> list[list[dict]]:
    return chunk(items, cfg.shards.items_per_shard)


def clips_fingerprint(cfg: Config, mirror: Mirror, items: list[dict]) -> str:
    """The shard's inputs: its segments, the settings, and what each input file is (size and
    modification time), so a clip fixed, added, replaced or removed in the mirror is rebuilt."""
    # the sample corpus is named by its place in the store, so copies of a data root agree
    if mirror.is_sample:
        where = CORPUS_DIR
    else:
        where = [os.path.abspath(p) for p in mirror.parquet] or os.path.abspath(str(mirror.media_dir))
    return fingerprint_of("clips/audioset", items, cfg.audio.model_dump(), cfg.mirror.model_dump(),
                          where, mirror.licence, cfg.limits.model_dump(), input_identities(cfg, mirror, items))


def input_identities(cfg: Config, mirror: Mirror, items: list[dict]) -> list:
    """Per item, the identity (``mumu.store.file_identity``) of each media file it is built from."""
    if mirror.parquet:
        files = sorted({it["file"] for it in items})
        return [[os.path.basename(f), file_identity(f)] for f in files]
    from sources.clips import mirror_index

    try:
        index = mirror_index(cfg, str(mirror.media_dir))
    except FileNotFoundError:
        return []  # the shard's work reports the missing folder
    out = []
    for it in items:
        found = index.lookup(Segment.from_item(it)) or {}
        out.append([it["clip_id"], {k: [os.path.basename(str(v)), file_identity(str(v), not mirror.is_sample)]
                                    for k, v in sorted(found.items()) if k != "whole" and v}])
    return out


def clips_shard(store: Store, cfg: Config, mirror: Mirror, shard: int, items: list[dict]) -> ShardResult:
    def work():
        if mirror.parquet:
            table, failures = ingest_parquet_shard(store, cfg, items, mirror.licence)
        else:
            table, failures = ingest_audioset_shard(store, cfg, mirror.media_dir, items, mirror.ground_truth, mirror.licence)
        return table, failures

    return run_shard(store, "clips/audioset", shard, clips_fingerprint(cfg, mirror, items), len(items), work,
                     audio_seconds_column="duration_s")


# --- MUEdit sources: Looperman loops and Slakh tracks ---------------------------------------------

def edit_source_paths(cfg: Config, store: Store) -> tuple[str | None, str | None, bool]:
    """(Looperman manifest-or-folder, Slakh root, is_sample): the config's, else the sample corpus's."""
    from sources.sample_corpus import LOOPS_DIR, SLAKH_DIR

    loops = cfg.looperman.manifest or cfg.looperman.folder
    slakh = cfg.slakh.root
    if loops or slakh or not cfg.mirror.sample:
        return loops, slakh, False
    # the sample corpus's folders, as local paths (a remote store's are copied to this machine)
    local = [store.local_path(store.path(d)) if store.exists(store.path(d)) else os.path.join(store.local_root, d)
             for d in (LOOPS_DIR, SLAKH_DIR)]
    return local[0], local[1], True


def plan_loops(cfg: Config, store: Store) -> tuple[list[dict], list[dict]]:
    from sources.looperman import list_loops

    loops, _, sample = edit_source_paths(cfg, store)
    if loops is None:
        return [], []
    if sample:
        cfg = cfg.model_copy(update={"looperman": cfg.looperman.model_copy(update={"folder": loops})})
    items, failures = list_loops(cfg)
    return sorted(items, key=lambda d: str(d["loop_id"])), failures


def plan_tracks(cfg: Config, store: Store) -> tuple[list[str], list[dict]]:
    """(Slakh track folders, failure rows): a release tarball that cannot be extracted safely or
    within ``cfg.limits`` is one row ``slakh:<tarball>``, a track found twice a ``duplicate_track``
    row (``sources.slakh.plan_tracks``); the rest of the build goes on."""
    from sources.slakh import plan_tracks as find_planned

    _, root, _ = edit_source_paths(cfg, store)
    if root is None:
        return [], []
    tracks, failures = find_planned(root, store.scratch_dir("work", "slakh-extracted"), cfg.limits)
    return sorted(tracks), failures


def loop_clips_shard(store: Store, cfg: Config, shard: int, items: list[dict]) -> ShardResult:
    from sources.looperman import ingest_looperman_shard

    # loops inside the store are named relative to it, so copies of a data root agree
    portable = [{**it, "file": os.path.relpath(it["file"], store.local_root)}
                if str(it.get("file") or "").startswith(store.local_root + "/")
                else it for it in items]
    # and what each local loop file is: a replaced or fixed loop is rebuilt (in-store files: size only)
    identity = [file_identity(it["file"], not str(it["file"]).startswith(store.local_root + "/"))
                if isinstance(it.get("file"), str) and it["file"] else None for it in items]
    fp = fingerprint_of("clips/looperman", portable, cfg.audio.model_dump(), cfg.looperman.model_dump(),
                        cfg.limits.model_dump(), identity)

    def work():
        return ingest_looperman_shard(store, cfg, items)

    return run_shard(store, "clips/looperman", shard, fp, len(items), work, audio_seconds_column="duration_s")


def slakh_clips_shard(store: Store, cfg: Config, shard: int, track_dirs: list[str]) -> ShardResult:
    from sources.slakh import ingest_slakh_shard, input_identity

    # what each track is: its files with their size and mtime (in-store tracks, e.g. the sample
    # corpus's: size only, so copies of a data root agree), and the release tarball it came from
    inside = store.local_root.rstrip("/") + "/"
    digest = [(os.path.basename(t), input_identity(t, not os.path.abspath(t).startswith(inside)))
              for t in track_dirs]
    root = cfg.slakh.root
    tarball = [os.path.basename(root), file_identity(root)] if root and os.path.isfile(root) else None
    fp = fingerprint_of("clips/slakh", digest, cfg.audio.model_dump(), cfg.slakh.model_dump(), cfg.corpus.soundfont,
                        cfg.limits.model_dump(), tarball)

    def work():
        return ingest_slakh_shard(store, cfg, track_dirs)

    return run_shard(store, "clips/slakh", shard, fp, len(track_dirs), work, audio_seconds_column="duration_s")
