"""Working tables: clips, annotations, failures, instruction pools.

Each table is declared once as Hugging Face ``Features``; the Arrow schema (with the
``huggingface`` metadata ``datasets`` reads back) is derived from it, so the two never drift.
Working tables reference media by path and sha256; only the final datasets embed bytes.
"""

from __future__ import annotations

import datasets

from mumu.tables import FAILURES, schema_of, table_from_rows  # noqa: F401  (listed here with the other tables)

S = datasets.Value("string")
F64 = datasets.Value("float64")
I32 = datasets.Value("int32")
I64 = datasets.Value("int64")

CLIPS = datasets.Features(
    {
        "clip_id": S,  # stable, derived from the source: as-<ytid>-<start_ms>, lm-<loop>, sl-<track>-<stems>
        "source": S,  # audioset | looperman | slakh
        "origin": S,  # YouTube id, URL or track name
        "group_id": S,  # what splits group by (one video never lands in two splits)
        "start_s": F64,
        "end_s": F64,
        "labels": datasets.List(S),  # source label ids, e.g. AudioSet mids
        "tags": datasets.List(S),  # human-readable names of the labels and other ground truth
        "licence": S,
        "audio_path": S,  # relative to the store root
        "audio_sha256": S,
        "duration_s": F64,
        "sample_rate": I32,
        "channels": I32,
        "video_path": S,
        "video_sha256": S,
        "image_path": S,
        "image_sha256": S,
        "meta": S,  # JSON: source-specific metadata and ground truth
        # JSON {medium: {stage, reason, detail}} for a still / video that was found but refused (its
        # path is then null); null when none. The clip keeps its audio; the medium's caption stage
        # reports the problem, so only the datasets that need the medium show it
        "media_errors": S,
        # quality measures (sources/quality.py): columns, never deletions; builds select by thresholds
        "loudness_lufs": F64,  # ITU-R BS.1770 integrated loudness; null when unmeasurable
        "silence_ratio": F64,
        "clipping_ratio": F64,
        "speech_ratio": F64,  # Silero VAD; null when the detector is unavailable
        "quality_ok": datasets.Value("bool"),
        "quality_reasons": datasets.List(S),
    }
)

ANNOTATIONS = datasets.Features(
    {
        "clip_id": S,
        "kind": S,  # music_caption | image_caption | video_caption | instruction | response
        "text": S,
        "annotator": S,  # backend name, e.g. features, vllm
        "model": S,
        "prompt_version": S,  # sha256 prefix of the prompt template file
        "params": S,  # JSON sampling parameters
        "seed": I64,
        "facts": S,  # JSON: measured facts the text rests on
        # music captions: CLAP cosine of the caption and its clip (builders/caption_gate.py); null when
        # the gate is off and for other kinds
        "clap_score": F64,
    }
)

# instruction pools (annotators/instruction_pools.py): one row per kept instruction, with provenance
INSTRUCTION_POOL = datasets.Features(
    {
        "pool": S,
        "instruction": S,
        "key": S,  # normalised text used for deduplication
        "annotator": S,  # backend
        "model": S,
        "prompt_version": S,
        "params": S,  # JSON sampling parameters
        "seed": I64,  # the request's seed
        "request": I32,  # which request of the pool produced it
        "position": I32,  # its index in that request's answer
    }
)

# the candidates a pool turned down, and why
POOL_REJECTS = datasets.Features({"pool": S, "request": I32, "candidate": S, "reason": S, "detail": S})
