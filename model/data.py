"""Training data straight from the Parquet shards of MUCaps, MUImage, MUVideo and MUEdit.

``build_index`` reads only the small columns (task, modalities) of every row group and cuts the
rows each stage uses into blocks; ``ShardDataset`` streams them: every epoch a seeded permutation
of the blocks (split over DDP ranks and loader workers) and of the rows in each block, then a
seeded shuffle buffer, then decoding in the worker: FLAC through libsndfile resampled with soxr to
MERT's rate (24 kHz), JPEG through PIL and the ViT processor, MP4 through torchcodec (frames spread
evenly over the clip) and the ViViT processor, the conversation through the LLM tokenizer, the
target caption through the music decoder's tokenizer. ``collate`` pads everything to the batch.

What a stage sees of a record (``stage_view``):

* stage 1 (understanding): MUCaps captioning records as they are; MUImage / MUVideo records become
  captioning records of their image / video (question from a small pool, answer = its caption);
* stage 2 (generation): MUCaps text-to-music records; the answer ends in the [AUD] tokens and the
  caption is the projector's target;
* stage 3 (instruction tuning): every record of the four datasets, plus plain-text instruction
  data in the same conversation schema (``.jsonl`` or ``.parquet`` files, ``train.text_data``);
  an MUEdit record's projector target is the model turn, the one text about the output audio.

Beside the datasets a stage may name external inputs in their published formats (``alpaca``,
``coco``, ``musicqa``, ``musicqa_pretrain``: ``model.stage_inputs``), indexed as in-memory blocks.
Every dataset or input a stage names is reported in ``Index.inputs`` (``used: ...`` or
``absent: why``): none is skipped silently.

Resuming mid-epoch is exact: the order is a function of (seed, epoch, rank, worker count) and the
dataset skips the references of already-trained batches before decoding anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from model import stage_inputs
from model.config import MuMuConfig
from schemas.reading import DATASET_NAMES, file_records, media_bytes, read_row_group, row_groups, split_files

# size: the index, the decoding and the seeded resumable stream are one protocol (block -> rows -> batches).
log = logging.getLogger(__name__)

TEXT = "text"
IGNORE = -100
_INDEX_COLUMNS = ["task", "input_modality", "output_modality"]

IMAGE_QUESTIONS = ("Describe the image in detail.", "What is shown in this picture? Describe it in detail.",
                   "Give a detailed description of the image.")
VIDEO_QUESTIONS = ("Describe the video in detail.", "What happens in this video? Describe it in detail.",
                   "Give a detailed description of the video.")


# ---------------------------------------------------------------- index

@dataclass(frozen=True)
class Block:
    dataset: str
    path: str
    row_group: int
    rows: tuple[int, ...]
    view: str  # caption_audio | caption_image | caption_video | instruction


def stage_view(stage: int, dataset: str, task: str, input_modality: str, output_modality: str) -> str | None:
    """What a stage makes of a record, or None when the stage does not use it."""
    if stage == 1:
        if dataset == "MUCaps" and input_modality == "audio" and output_modality == "text":
            return "caption_audio"
        if dataset == "MUImage":
            return "caption_image"
        if dataset == "MUVideo":
            return "caption_video"
        return None
    if stage == 2:
        return "instruction" if dataset == "MUCaps" and output_modality == "audio" else None
    if stage == 3:
        return "instruction"
    raise ValueError(f"unknown stage {stage}")


class Index(list):
    """The blocks of a stage (a list of ``Block``), with ``inputs``: each dataset or input the stage
    names -> ``used: N rows ...`` or ``absent: why``, for the run summary."""

    def __init__(self, blocks=(), inputs: dict[str, str] | None = None):
        super().__init__(blocks)
        self.inputs: dict[str, str] = dict(inputs or {})

    def absent(self) -> dict[str, str]:
        return {k: v for k, v in self.inputs.items() if v.startswith("absent")}


def _text_rows(path: str) -> list[dict]:
    import fsspec

    if path.endswith(".parquet"):
        return list(file_records(path, ["conversation"]))
    with fsspec.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def build_index(cfg: MuMuConfig, data_root: str, stage: int, split: str = "train", block_rows: int = 32,
                max_rows: int | None = None, text_files: tuple[str, ...] | None = None) -> Index:
    """The blocks of rows ``stage`` trains on, in file order (shuffling happens per epoch), and what
    became of each dataset or input the stage names (``Index.inputs``)."""
    wanted = cfg.train.stages[stage].datasets
    known = (*DATASET_NAMES, *stage_inputs.INPUT_NAMES, TEXT)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"train.stages.{stage}.datasets names {unknown}; expected names from {list(known)}")
    max_rows = max_rows if max_rows is not None else cfg.train.max_rows
    blocks: list[Block] = []
    report: dict[str, str] = {}

    def absent(name: str, why: str) -> None:
        report[name] = f"absent: {why}"
        log.warning("stage %d: %s absent (%s): training on the others", stage, name, why)

    for name in DATASET_NAMES:
        if name not in wanted:
            continue
        taken = 0
        files = split_files(data_root, name, split)
        if not files:
            absent(name, f"no {split} shards under {data_root}/datasets/{name}/data")
        for path in files:
            for rg, group in enumerate(row_groups(path, _INDEX_COLUMNS)):
                t = group.to_pydict()
                by_view: dict[str, list[int]] = {}
                for i, (task, im, om) in enumerate(zip(t["task"], t["input_modality"], t["output_modality"])):
                    v = stage_view(stage, name, task, im, om)
                    if v is None or (max_rows is not None and taken >= max_rows):
                        continue
                    by_view.setdefault(v, []).append(i)
                    taken += 1
                for v, rows in by_view.items():
                    for s in range(0, len(rows), block_rows):
                        blocks.append(Block(name, path, rg, tuple(rows[s:s + block_rows]), v))
        if files:
            report[name] = f"used: {taken} rows" if taken else "absent: no rows this stage uses"
    for name in stage_inputs.INPUT_NAMES:
        if name not in wanted:
            continue
        try:
            loaded = stage_inputs.load(cfg, name)
        except stage_inputs.InputError as e:
            absent(name, str(e))
            continue
        n = len(loaded.rows) if max_rows is None else min(len(loaded.rows), max_rows)
        if not n:
            absent(name, f"no usable entries in {loaded.path}{stage_inputs.skips(loaded)}")
            continue
        for s in range(0, n, block_rows):
            blocks.append(Block(name, loaded.path, 0, tuple(range(s, min(n, s + block_rows))), stage_inputs.VIEWS[name]))
        report[name] = stage_inputs.describe(loaded, n)
    if TEXT in wanted:
        paths = text_files if text_files is not None else cfg.train.text_data
        if not paths:
            absent(TEXT, "train.text_data is empty")
        taken = 0
        for path in paths:
            n = len(_text_rows(path))
            n = min(n, max_rows) if max_rows is not None else n
            taken += n
            for s in range(0, n, block_rows):
                blocks.append(Block(TEXT, path, 0, tuple(range(s, min(n, s + block_rows))), "instruction"))
        if paths:
            report[TEXT] = f"used: {taken} rows of {len(paths)} files"
    if not blocks:
        raise ValueError(f"no training rows for stage {stage} under {data_root} (datasets {wanted}, split {split}): "
                         + "; ".join(f"{k} {v}" for k, v in report.items()))
    return Index(blocks, report)


# ---------------------------------------------------------------- media

def decode_audio(data: bytes, rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Mono float32 at ``rate`` (libsndfile, resampled with soxr)."""
    import soundfile as sf
    import soxr

    x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != rate:
        x = soxr.resample(x, sr, rate, quality="HQ").astype(np.float32)
    if max_seconds:
        x = x[: int(max_seconds * rate)]
    return np.ascontiguousarray(x, dtype=np.float32)


def decode_image(data: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")


def decode_video(data: bytes, frames: int) -> list[np.ndarray]:
    """``frames`` RGB frames (H, W, 3) spread evenly over the clip (torchcodec)."""
    from torchcodec.decoders import VideoDecoder

    dec = VideoDecoder(data)
    n = dec.metadata.num_frames or len(dec)
    idx = np.linspace(0, max(n - 1, 0), frames).round().astype(int).tolist()
    batch = dec.get_frames_at(indices=idx).data  # (N, C, H, W) uint8
    return [f.permute(1, 2, 0).numpy() for f in batch]


# ---------------------------------------------------------------- text

def _pick(pool: tuple[str, ...], key: str) -> str:
    return pool[int(hashlib.sha256(key.encode()).hexdigest(), 16) % len(pool)]


def encode_conversation(turns: list[dict], procs, cfg: MuMuConfig, wants_music: bool) -> tuple[list[int], list[int]]:
    """Token ids and labels (IGNORE outside the model's turns). The last model turn of a record whose
    output is music ends in the N [AUD] tokens, then EOS."""
    tok = procs.tokenizer

    def enc(s: str) -> list[int]:
        return tok(s, add_special_tokens=False)["input_ids"] if s else []

    head = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + enc(cfg.data.system_prompt + "\n\n")
    pieces: list[list] = [[head, False, "fixed"]]
    last_gpt = max((i for i, t in enumerate(turns) if t["from"] == "gpt"), default=-1)
    for i, t in enumerate(turns):
        if t["from"] == "human":
            pieces += [[enc("### Instruction:\n"), False, "fixed"], [enc(t["value"]), False, "human"],
                       [enc("\n\n### Response:\n"), False, "fixed"]]
        else:
            tail = (list(procs.aud_ids) if (wants_music and i == last_gpt) else []) + [tok.eos_token_id]
            pieces += [[enc(t["value"]), True, "gpt"], [tail, True, "fixed"], [enc("\n\n"), False, "fixed"]]
    limit = cfg.data.max_text_tokens
    excess = sum(len(p[0]) for p in pieces) - limit
    for kind in ("human", "gpt"):  # shorten instructions first, then answers; never the [AUD] tail
        while excess > 0:
            cand = [p for p in pieces if p[2] == kind and len(p[0]) > 4]
            if not cand:
                break
            p = max(cand, key=lambda p: len(p[0]))
            cut = min(excess, len(p[0]) - 4)
            p[0] = p[0][: len(p[0]) - cut]
            excess -= cut
    ids, labels = [], []
    for p, is_label, _ in pieces:
        ids += p
        labels += p if is_label else [IGNORE] * len(p)
    return ids[:limit], labels[:limit]


# ---------------------------------------------------------------- examples

def _columns(dataset: str, view: str) -> list[str]:
    base = ["id", "conversation", "input_modality", "output_modality"]
    if dataset == TEXT:
        return ["conversation"]
    if view == "caption_audio":
        return base + ["audio"]
    if view == "caption_image":
        return base + ["image", "image_caption"]
    if view == "caption_video":
        return base + ["video", "video_caption"]
    extra = {"MUCaps": ["audio", "caption"], "MUImage": ["image", "music_caption"],
             "MUVideo": ["video", "music_caption"], "MUEdit": ["input_audio", "output_caption"]}[dataset]
    return base + extra


def edit_caption(row: dict) -> str | None:
    """The projector target of an MUEdit record: the text about its output audio. MUEdit has no caption
    column; its model turn (the response) describes the edited music, e.g. "Here is the music with a
    piano part added." (an ``output_caption`` column, should a build add one, comes first)."""
    if row.get("output_caption"):
        return row["output_caption"]
    gpt = [t.get("value") for t in row.get("conversation") or [] if t.get("from") == "gpt" and t.get("value")]
    return gpt[-1] if gpt else None


def make_example(dataset: str, view: str, row: dict, procs, cfg: MuMuConfig) -> dict:
    """One record -> tensors for the model (decoding happens here, in the loader worker)."""
    rid = row.get("id") or ""
    audio = image = video = None
    caption = None
    if view == "caption_audio":
        turns, wants_music, audio = row["conversation"], False, row["audio"]
    elif view == "caption_image":
        turns = [{"from": "human", "value": _pick(IMAGE_QUESTIONS, rid)}, {"from": "gpt", "value": row["image_caption"]}]
        wants_music, image = False, row["image"]
    elif view == "caption_video":
        turns = [{"from": "human", "value": _pick(VIDEO_QUESTIONS, rid)}, {"from": "gpt", "value": row["video_caption"]}]
        wants_music, video = False, row["video"]
    else:
        turns = row["conversation"]
        wants_music = row.get("output_modality") == "audio"
        im = row.get("input_modality") or "text"
        if im == "audio":
            audio = row.get("input_audio") if dataset == "MUEdit" else row.get("audio")
        elif im == "image":
            image = row.get("image")
        elif im == "video":
            video = row.get("video")
        if wants_music:
            caption = {"MUCaps": row.get("caption"), "MUEdit": edit_caption(row)}.get(dataset, row.get("music_caption"))
    ids, labels = encode_conversation(turns, procs, cfg, wants_music)
    ex: dict[str, Any] = {"id": rid, "dataset": dataset, "input_ids": torch.tensor(ids, dtype=torch.long),
                          "labels": torch.tensor(labels, dtype=torch.long), "wants_music": wants_music,
                          "audio": None, "image": None, "video": None, "caption": caption}
    if audio is not None:
        wave = decode_audio(media_bytes(audio, read_paths=True), procs.audio_rate, cfg.data.max_audio_seconds)
        ex["audio"] = torch.from_numpy(
            np.asarray(procs.audio(wave, sampling_rate=procs.audio_rate, return_tensors="np")["input_values"][0],
                       dtype=np.float32))
    if image is not None:
        ex["image"] = procs.image(decode_image(media_bytes(image, read_paths=True)), return_tensors="pt")["pixel_values"][0]
    if video is not None:
        frames = decode_video(media_bytes(video, read_paths=True), procs.video_frames)
        ex["video"] = procs.video(frames, return_tensors="pt")["pixel_values"][0]
    if caption and procs.caption_tokenizer is not None:
        c = procs.caption_tokenizer(caption, padding="max_length", max_length=cfg.data.caption_max_tokens,
                                    truncation=True, return_tensors="pt")
        ex["caption_ids"], ex["caption_mask"] = c["input_ids"][0], c["attention_mask"][0]
    return ex


def collate(examples: list[dict], pad_id: int) -> dict:
    """Right-pad text; stack each modality over the rows that have it (``<m>_rows`` index the batch)."""
    b = len(examples)
    n = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((b, n), pad_id, dtype=torch.long)
    labels = torch.full((b, n), IGNORE, dtype=torch.long)
    mask = torch.zeros((b, n), dtype=torch.long)
    for i, e in enumerate(examples):
        k = len(e["input_ids"])
        ids[i, :k], labels[i, :k], mask[i, :k] = e["input_ids"], e["labels"], 1
    out: dict[str, Any] = {"input_ids": ids, "labels": labels, "attention_mask": mask,
                           "wants_music": torch.tensor([e["wants_music"] for e in examples]),
                           "ids": [e["id"] for e in examples], "datasets": [e["dataset"] for e in examples]}
    rows = [i for i, e in enumerate(examples) if e["audio"] is not None]
    if rows:
        lengths = torch.tensor([len(examples[i]["audio"]) for i in rows])
        values = torch.zeros((len(rows), int(lengths.max())))
        for j, i in enumerate(rows):
            values[j, : lengths[j]] = examples[i]["audio"]
        out.update(audio_values=values, audio_lengths=lengths, audio_rows=torch.tensor(rows))
    for m in ("image", "video"):
        rows = [i for i, e in enumerate(examples) if e[m] is not None]
        if rows:
            out[f"{m}_values"] = torch.stack([examples[i][m] for i in rows])
            out[f"{m}_rows"] = torch.tensor(rows)
    rows = [i for i, e in enumerate(examples) if e.get("caption")]
    if rows:
        out["caption_rows"] = torch.tensor(rows)
        out["captions"] = [examples[i]["caption"] for i in rows]
        if "caption_ids" in examples[rows[0]]:
            out["caption_ids"] = torch.stack([examples[i]["caption_ids"] for i in rows])
            out["caption_mask"] = torch.stack([examples[i]["caption_mask"] for i in rows])
    return out


# ---------------------------------------------------------------- the stream

def loader_order(counts: list[int]) -> list[tuple[int, int]]:
    """(worker, batch index) in the order a DataLoader delivers them: round-robin over the workers
    that still have batches."""
    out, i = [], 0
    while any(i < c for c in counts):
        out += [(w, i) for w, c in enumerate(counts) if i < c]
        i += 1
    return out


class ShardDataset(IterableDataset):
    """Seeded, epoch-reshuffled stream of examples from the blocks of a stage."""

    def __init__(self, blocks: list[Block], procs, cfg: MuMuConfig, batch_size: int, seed: int = 0,
                 shuffle: bool = True, rank: int = 0, world: int = 1, num_workers: int = 0):
        self.blocks, self.procs, self.cfg = blocks, procs, cfg
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.rank, self.world, self.num_workers = rank, world, max(num_workers, 0)
        self.epoch = 0
        self.skip_batches = 0
        self.failures = 0

    def set_epoch(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    # --- the deterministic order
    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, *key])

    def worker_blocks(self, worker: int, workers: int) -> list[int]:
        order = self._rng(0).permutation(len(self.blocks)) if self.shuffle else np.arange(len(self.blocks))
        return [int(b) for b in order[self.rank::self.world][worker::workers]]

    def worker_counts(self) -> list[int]:
        w = max(self.num_workers, 1)
        return [sum(len(self.blocks[b].rows) for b in self.worker_blocks(i, w)) for i in range(w)]

    def batches_per_epoch(self, epoch: int | None = None) -> int:
        saved = self.epoch
        if epoch is not None:
            self.epoch = epoch
        try:
            return sum(math.ceil(c / self.batch_size) for c in self.worker_counts())
        finally:
            self.epoch = saved

    def _rows(self, worker: int, workers: int) -> Iterator[tuple[int, int, dict]]:
        """(block, position, row) in this worker's order, through the shuffle buffer. A block is read
        once (only the columns its view needs); the buffer holds undecoded rows."""
        def raw():
            for b in self.worker_blocks(worker, workers):
                rows = self._load_block(b)
                pos = self._rng(1, b).permutation(len(rows)) if self.shuffle else range(len(rows))
                for p in pos:
                    yield b, int(p), rows[p]

        size = self.cfg.train.shuffle_buffer if self.shuffle else 0
        if size <= 1:
            yield from raw()
            return
        rng = self._rng(2, self.rank, worker)
        buf: list = []
        for item in raw():
            if len(buf) < size:
                buf.append(item)
                continue
            i = int(rng.integers(len(buf)))
            buf[i], item = item, buf[i]
            yield item
        order = rng.permutation(len(buf))
        for i in order:
            yield buf[int(i)]

    def _load_block(self, b: int) -> list[dict]:
        blk = self.blocks[b]
        if blk.dataset in stage_inputs.VIEWS:
            rows = stage_inputs.load(self.cfg, blk.dataset).rows
            return [rows[i] for i in blk.rows]
        if blk.dataset == TEXT:
            cache = self.__dict__.setdefault("_text_cache", {})
            if blk.path not in cache:
                cache.clear()
                cache[blk.path] = _text_rows(blk.path)
            rows = cache[blk.path]
            return [{"id": f"text-{i}", "input_modality": "text", "output_modality": "text", **rows[i]} for i in blk.rows]
        t = read_row_group(blk.path, blk.row_group, _columns(blk.dataset, blk.view))
        return t.take(list(blk.rows)).to_pylist()

    def examples(self) -> Iterator[dict]:
        """Decoded examples one by one, in the single-worker order (for inspection and tests)."""
        for b, _, row in self._rows(0, 1):
            blk = self.blocks[b]
            yield make_example(blk.dataset, blk.view, row, self.procs, self.cfg)

    def _batches(self, worker: int, workers: int) -> Iterator[list]:
        """The undecoded batches of one loader worker, in order."""
        buf = []
        for item in self._rows(worker, workers):
            buf.append(item)
            if len(buf) == self.batch_size:
                yield buf
                buf = []
        if buf:
            yield buf

    def _decode(self, items: list) -> dict:
        examples = []
        for b, p, row in items:
            blk = self.blocks[b]
            try:
                examples.append(make_example(blk.dataset, blk.view, row, self.procs, self.cfg))
            except Exception as e:  # a bad record never stops training; it is logged and counted
                self.failures += 1
                log.warning("skipping %s row %s of %s: %s", blk.dataset, blk.rows[p], blk.path, e)
        if not examples:
            return None
        batch = collate(examples, self.procs.tokenizer.pad_token_id)
        batch["skipped"] = len(items) - len(examples)  # counted here: a loader worker's own counter is not seen
        return batch

    def __iter__(self) -> Iterator[dict]:
        """Collated batches. Batches are made here, in the dataset, so a resumed epoch makes exactly the
        batches of the uninterrupted one; with ``skip_batches`` the remaining batches are dealt to the
        workers so that the loader's round-robin delivers them in the uninterrupted order."""
        info = get_worker_info()
        me, workers = (info.id, info.num_workers) if info else (0, 1)
        if not self.skip_batches:
            for items in self._batches(me, workers):
                batch = self._decode(items)
                if batch is not None:
                    yield batch
            return
        counts = [math.ceil(sum(len(self.blocks[b].rows) for b in self.worker_blocks(w, workers)) / self.batch_size)
                  for w in range(workers)]
        mine = loader_order(counts)[self.skip_batches:][me::workers]
        streams: dict[int, tuple[Iterator[list], list[int]]] = {}
        for w, i in mine:
            if w not in streams:
                streams[w] = (self._batches(w, workers), [0])
            it, nxt = streams[w]
            while nxt[0] < i:  # pass over batches another worker delivers (nothing is decoded)
                next(it)
                nxt[0] += 1
            items = next(it)
            nxt[0] += 1
            batch = self._decode(items)
            if batch is not None:
                yield batch


def _identity(x):
    return x


def _worker_context():
    """The forkserver context, its server preloaded with this module (torch, the processors' code):
    the server is one clean single-threaded process, and each worker is a cheap fork of it."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__])
    return ctx


def make_loader(ds: ShardDataset, num_workers: int | None = None, pin_memory: bool = False,
                prefetch_factor: int | None = None) -> DataLoader:
    num_workers = ds.num_workers if num_workers is None else num_workers
    ds.num_workers = num_workers
    kw = {}
    if num_workers > 0:
        # workers start from a fresh process, never as a fork of this one: training runs inside Prefect
        # (and benchmarks beside its API server), whose threads may hold locks at the moment of a
        # fork, and a forked worker then waits on them for ever
        kw = dict(prefetch_factor=prefetch_factor or ds.cfg.train.prefetch_factor, persistent_workers=False,
                  multiprocessing_context=_worker_context())
    return DataLoader(ds, batch_size=None, collate_fn=_identity, num_workers=num_workers, pin_memory=pin_memory, **kw)
