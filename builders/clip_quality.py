"""The quality stage: a clips shard in, the same clips with their quality measures and verdict out.

Ingest decodes, resamples and writes each clip's audio (and copies its media); this stage then
reads the FLAC it wrote and makes the measures of ``sources.quality`` (loudness, silence,
clipping, Silero speech share) on the process's CPU pool, with the verdict against
``cfg.quality``. It is a stage of its own, with its own shards, markers and fingerprint, so that:

- ingest is only decoding and copying (the measures cost ten times the decoding);
- a change of a quality threshold redoes this stage and what reads it, never the ingest;
- the eligibility gate (``builders.records``) and the MUEdit loop plan read its table: the
  clips every later stage reads are these, ``quality_ok`` filled for every row.

The stage is ``quality/<source>`` for the clips stage ``clips/<source>`` (AudioSet clips and
Looperman loops; Slakh tracks are rendered from MIDI and not measured).
"""

from __future__ import annotations

import pyarrow as pa

from mumu.config import Config
from mumu.failures import Failure
from mumu.faults import is_environment_fault
from mumu.media import decode_audio_bytes
from mumu.stage import ShardResult, run_shard
from mumu.store import Store, fingerprint_of
from schemas.tables import CLIPS, table_from_rows
from sources.quality import measure_quality, quality_verdict

MEASURES = ("loudness_lufs", "silence_ratio", "clipping_ratio", "speech_ratio")


def quality_stage(clips_stage: str) -> str:
    """``quality/audioset`` for ``clips/audioset``."""
    return "quality/" + clips_stage.removeprefix("clips/")


def with_quality(store: Store, table: pa.Table, cfg: Config, stage: str) -> tuple[pa.Table, list[dict]]:
    """The clips of ``table`` with their quality columns filled from their audio (whatever the
    source), and a failure row (``unmeasurable_audio``, at ``stage``) for a clip the measures fail
    on, which is left out; a fault of the machine (an unreadable store) is raised."""
    from mumu.cpu_pool import map_items, processes_for

    rows, kept, failures = table.to_pylist(), [], []
    processes = processes_for(cfg.runner)
    group = 4 * processes  # decoded clips held at once: a few per process, never the whole shard
    for start in range(0, len(rows), group):
        batch = rows[start:start + group]
        audios = [(store.read_bytes(store.path(row["audio_path"])), cfg.quality) for row in batch]
        for row, got in zip(batch, map_items(_quality_of, audios, processes)):
            try:
                q = got.get()
            except Exception as e:  # noqa: BLE001 - one clip's problem, never the shard's
                if is_environment_fault(e):
                    raise
                failures.append(Failure("unmeasurable_audio", f"{type(e).__name__}: {e}"[:500]).row(row["clip_id"], stage))
                continue
            ok, reasons = quality_verdict(q, cfg.quality)
            row.update({k: q[k] for k in MEASURES})
            row.update(quality_ok=ok, quality_reasons=reasons)
            kept.append(row)
    return table_from_rows(kept, CLIPS), failures


def _quality_of(item: tuple) -> dict:
    """The quality measures of one clip's FLAC bytes (on the process's CPU pool)."""
    data, qcfg = item
    samples, sr = decode_audio_bytes(data)
    return measure_quality(samples, sr, qcfg)


def quality_shard(store: Store, cfg: Config, clips: ShardResult) -> ShardResult:
    """Run (or skip) the quality stage for one clips shard: its rows with the measures and verdict
    (a clip below the bar is kept: the record gate says why it is left out)."""
    stage = quality_stage(clips.stage)
    fp = fingerprint_of(stage, clips.fingerprint, cfg.quality.model_dump())

    def work():
        return with_quality(store, store.read_table(clips.output), cfg, stage)

    return run_shard(store, stage, clips.shard, fp, clips.ok, work, audio_seconds_column="duration_s")
