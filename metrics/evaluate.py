"""Score a set of predictions against the eval splits of the four datasets (plain functions; the
``evaluate-mumu`` flow in ``flows/evaluate.py`` wires them and publishes the result).

Predictions are files named by record id, looked up first under ``<predictions>/<Dataset>/`` and
then directly under ``<predictions>/``:

- text outputs (music captioning): ``<id>.txt``, or one ``predictions.jsonl`` of ``{"id", "text"}``;
- audio outputs (text/image/video-to-music, editing): ``<id>.wav`` (or .flac, .ogg, .mp3), any
  sample rate and channel count: every model input is resampled explicitly to the model's rate.

What each task is compared with:

| dataset / task | prediction | reference | metrics |
| --- | --- | --- | --- |
| MusicQA (``musicqa=``) | text | the pair's ``gpt`` turn | the same, both variants (the paper's Table 2) |
| MUCaps music_captioning | text | the record's ``gpt`` turn | BLEU, METEOR, ROUGE-L, BERTScore, both variants |
| MUCaps text_to_music | audio | ``audio`` | FAD, KL, CLAP score (text = ``caption``) |
| MUImage image_to_music | audio | ``audio`` | FAD, KL, alignment rank and IB rank with ``image`` |
| MUVideo video_to_music | audio | ``audio`` | FAD, KL, alignment rank and IB rank with ``video`` |
| MUEdit edit_* | audio | ``output_audio`` | FAD, KL, LSD |

A record without a prediction is listed under ``missing`` and left out of every metric of its
task (coverage is reported); a prediction that does not decode is listed under ``failed``.

``musicqa`` (the path of ``EvalMusicQA.json``, with ``musicqa_audio`` its audio folder) scores
Table 2 on MusicQA's evaluation split, as the paper does, instead of on MUCaps' captions; its
predictions are ``<predictions>/MusicQA/<entry>-<pair>.txt`` (see ``metrics.musicqa``). Every
Table 2 row carries each text metric twice: the standard one (``"BLEU"``) and the paper's
released code's (``"BLEU (released)"``), see ``metrics.text``.

``compare`` ({system name: predictions folder}) gives other systems' outputs for the same
image/video records: the "IB rank (paper)" ranks, per input, the evaluated system's clip among
theirs by aligner similarity (``metrics.audio.ib_rank``).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from metrics import audio as A
from metrics import musicqa as MQ
from metrics import report
from metrics import text as T
from schemas.reading import DATASET_NAMES, iter_records, media_bytes

log = logging.getLogger(__name__)

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class TaskSpec:
    dataset: str
    task: str  # a record's ``task`` value, or a prefix ending in "*"
    label: str  # the row name in the tables
    kind: str  # understanding | generation | editing
    reference: str  # column holding the reference (text: "gpt")
    text_column: str | None = None  # CLAP text
    visual_column: str | None = None  # image | video for the alignment rank

    def matches(self, task: str) -> bool:
        return task.startswith(self.task[:-1]) if self.task.endswith("*") else task == self.task


TASKS = (
    TaskSpec("MUCaps", "music_captioning", "Music understanding (MUCaps)", "understanding", "gpt"),
    TaskSpec("MUCaps", "text_to_music", "Text-to-music (MUCaps)", "generation", "audio", text_column="caption"),
    TaskSpec("MUImage", "image_to_music", "Image-to-music (MUImage)", "generation", "audio", visual_column="image"),
    TaskSpec("MUVideo", "video_to_music", "Video-to-music (MUVideo)", "generation", "audio", visual_column="video"),
    TaskSpec("MUEdit", "edit_*", "Music editing (MUEdit)", "editing", "output_audio"),
)
MUSICQA_TASK = TaskSpec(MQ.DATASET, "music_qa", "Music understanding (MusicQA)", "understanding", "gpt")


@dataclass
class EvalModels:
    """Which model computes what (spec strings: ``metrics.embeddings``); the defaults are the paper's."""

    embedding: str = "vggish"
    classifier: str = "passt"
    clap: str = "clap:laion/clap-htsat-unfused"
    aligner: str = "imagebind"
    bertscore_model: str = T.BERTSCORE_DEFAULT_MODEL
    bertscore_layers: int | None = None
    meteor_synonyms: str = "auto"
    device: str = "cpu"


@dataclass
class TaskResult:
    dataset: str
    task: str
    label: str
    kind: str
    records: int = 0
    scored: int = 0
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed
    invalid: dict[str, str] = field(default_factory=dict)  # input entries left out -> why (MusicQA)

    @property
    def coverage(self) -> float:
        return self.scored / self.records if self.records else 0.0


# ---------------------------------------------------------------- records (read by schemas.reading.iter_records)


def reference_text(record: dict) -> str:
    """The record's last ``gpt`` turn."""
    turns = [t["value"] for t in record["conversation"] if t["from"] == "gpt"]
    if not turns:
        raise ValueError(f"record {record['id']} has no gpt turn")
    return turns[-1]


def decode_audio(media) -> tuple[np.ndarray, int]:
    """A ``{bytes, path}`` struct, raw bytes or a file path -> (mono float64 samples, rate)."""
    src = str(media) if isinstance(media, (str, Path)) else io.BytesIO(media_bytes(media, read_paths=True) or b"")
    y, sr = sf.read(src, dtype="float64", always_2d=True)
    if y.shape[0] == 0:
        raise ValueError("audio holds no samples")
    return y.mean(axis=1), int(sr)


def decode_image(media):
    from PIL import Image

    return Image.open(io.BytesIO(media_bytes(media))).convert("RGB")


def decode_video(media, n_frames: int = 8) -> list:
    from metrics.embeddings import decode_video_frames

    return decode_video_frames(media_bytes(media), n_frames)


# ---------------------------------------------------------------- finding predictions


class Predictions:
    """Predicted text and audio files for one dataset, named by record id."""

    def __init__(self, root: str | Path, dataset: str):
        root = Path(root)
        self.dirs = [d for d in (root / dataset, root) if d.is_dir()]
        self.texts: dict[str, str] = {}
        for d in reversed(self.dirs):  # the dataset folder wins
            jl = d / "predictions.jsonl"
            if jl.is_file():
                for line in jl.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        row = json.loads(line)
                        self.texts[str(row["id"])] = str(row["text"])

    def text(self, rid: str) -> str | None:
        for d in self.dirs:
            p = d / f"{rid}.txt"
            if p.is_file():
                return p.read_text(encoding="utf-8").strip()
        return self.texts.get(rid)

    def audio(self, rid: str) -> Path | None:
        for d in self.dirs:
            for ext in AUDIO_EXTS:
                p = d / f"{rid}{ext}"
                if p.is_file():
                    return p
        return None


class MusicQAPredictions(Predictions):
    """Predictions for MusicQA records: by record id (``<id>.txt``, ``predictions.jsonl``) under
    ``<root>/MusicQA/`` or ``<root>/``, else from the released code's ``musicqa_answers.json``
    (``{audio_name: {question: answer}}``) there, looked up by the record's audio and question."""

    def __init__(self, root: str | Path, records: list[dict]):
        super().__init__(root, MQ.DATASET)
        self.keys = {r["id"]: (r["audio_name"], r["question"]) for r in records}
        self.answers: dict[tuple[str, str], str] = {}
        for d in reversed(self.dirs):
            f = d / MQ.ANSWERS_FILE
            if f.is_file():
                self.answers.update(MQ.read_answers(f))

    def text(self, rid: str) -> str | None:
        t = super().text(rid)
        if t is None and rid in self.keys:
            t = self.answers.get(self.keys[rid])
        return None if t is None else t.strip()


# ---------------------------------------------------------------- models, loaded once per run


class ModelCache:
    def __init__(self, models: EvalModels):
        self.models, self._loaded, self.errors = models, {}, {}

    def get(self, role: str):
        """The model for ``role`` (embedding, classifier, clap, aligner), or None with the reason kept."""
        if role in self._loaded:
            return self._loaded[role]
        if role in self.errors:
            return None
        from metrics import embeddings as E

        spec = getattr(self.models, role)
        loader = {"embedding": E.load_embedder, "classifier": E.load_classifier, "clap": E.load_clap,
                  "aligner": E.load_aligner}[role]
        try:
            self._loaded[role] = loader(spec) if spec else None
            if not spec:
                self.errors[role] = "disabled"
        except Exception as e:  # a missing package or weights: the metric is skipped with this reason
            self.errors[role] = f"{spec}: {type(e).__name__}: {e}"
            log.warning("%s model %s unavailable: %s", role, spec, e)
            self._loaded[role] = None
        return self._loaded[role]

    def describe(self) -> dict:
        out = asdict(self.models)
        out["loaded"] = {k: getattr(v, "name", type(v).__name__) for k, v in self._loaded.items() if v is not None}
        return out


# ---------------------------------------------------------------- scoring one task


def score_understanding(spec: TaskSpec, records: list[dict], preds: Predictions, models: EvalModels,
                        res: TaskResult) -> None:
    hyp, ref = [], []
    for r in records:
        p = preds.text(r["id"])
        if p is None:
            res.missing.append(r["id"])
            continue
        hyp.append(p)
        ref.append(reference_text(r))
    res.scored = len(hyp)
    if not hyp:
        res.skipped["all"] = "no predictions"
        return
    res.metrics["BLEU"] = T.bleu(hyp, ref)
    res.metrics["METEOR"] = T.meteor(hyp, ref, synonyms=models.meteor_synonyms)
    res.metrics["ROUGE-L"] = T.rouge_l(hyp, ref)
    try:
        res.metrics["BERTScore"] = T.bertscore(hyp, ref, model_type=models.bertscore_model,
                                               num_layers=models.bertscore_layers, device=models.device)
    except Exception as e:  # the BERTScore model is not available here
        res.skipped["BERTScore"] = f"{models.bertscore_model}: {type(e).__name__}: {e}"
        res.skipped[T.released_name("BERTScore")] = res.skipped["BERTScore"]
    # the released code's variants: character BLEU, wordpunct METEOR, and the recalls of the calls above
    res.metrics.update(T.released_metrics(hyp, ref, res.metrics, meteor_synonyms=models.meteor_synonyms))


def score_audio(spec: TaskSpec, records: list[dict], preds: Predictions, cache: ModelCache, res: TaskResult,
                others: dict[str, Predictions] | None = None) -> None:
    emb, clf = cache.get("embedding"), cache.get("classifier")
    clap = cache.get("clap") if spec.text_column else None
    aligner = cache.get("aligner") if spec.visual_column else None
    others = others if spec.visual_column else None
    ref_e, gen_e, ref_p, gen_p, texts, gen_c, q, a, lsd, ops = [], [], [], [], [], [], [], [], [], []
    ib_q, ib_left_out = [], 0  # IB rank: the inputs every compared system answered
    ib_sys: dict[str, list] = {EVALUATED: [], **{name: [] for name in (others or {}) if name != EVALUATED}}
    for r in records:
        path = preds.audio(r["id"])
        if path is None:
            res.missing.append(r["id"])
            continue
        try:
            gen, gsr = decode_audio(path)
        except Exception as e:
            res.failed[r["id"]] = f"{type(e).__name__}: {e}"
            continue
        ref, rsr = decode_audio(r[spec.reference])
        if emb is not None:
            ref_e.append(emb.embed(ref, rsr)), gen_e.append(emb.embed(gen, gsr))
        if clf is not None:
            ref_p.append(clf.probs(ref, rsr)), gen_p.append(clf.probs(gen, gsr))
        if clap is not None:
            texts.append(r[spec.text_column]), gen_c.append(clap.audio_embedding(gen, gsr))
        if aligner is not None:
            vis = r[spec.visual_column]
            q.append(aligner.image_profile(decode_image(vis)) if spec.visual_column == "image"
                     else aligner.video_profile(decode_video(vis)))
            a.append(aligner.audio_profile(gen, gsr))
            if others:
                theirs = _other_profiles(others, r["id"], aligner)
                if theirs is None:
                    ib_left_out += 1
                else:
                    ib_q.append(q[-1])
                    for name, prof in theirs.items():
                        ib_sys[name].append(prof)
                    ib_sys[EVALUATED].append(a[-1])
        if spec.kind == "editing":
            lsd.append(A.log_spectral_distance(gen, ref, gsr, rsr))
            ops.append(r.get("operation") or "?")
        res.scored += 1

    def skip(metric: str, role: str | None, need: int = 1, have: int = 0) -> bool:
        if role is not None and cache.get(role) is None:
            res.skipped[metric] = cache.errors.get(role, "model unavailable")
            return True
        if have < need:
            res.skipped[metric] = f"needs at least {need} scored records, has {have}"
            return True
        return False

    if not skip("FAD", "embedding", 2, len(gen_e)):
        ref_rows, gen_rows = np.concatenate(ref_e), np.concatenate(gen_e)
        if min(len(ref_rows), len(gen_rows)) < 2:
            res.skipped["FAD"] = "fewer than 2 embedding rows"
        else:
            res.metrics["FAD"] = {"score": A.fad(ref_rows, gen_rows), "model": emb.name, "ref_rows": len(ref_rows),
                                  "gen_rows": len(gen_rows), "dim": int(ref_rows.shape[1])}
    if not skip("KL", "classifier", 1, len(gen_p)):
        res.metrics["KL"] = {**A.kl_metric(np.stack(ref_p), np.stack(gen_p)), "model": clf.name}
    if spec.text_column and not skip("CLAP", "clap", 1, len(gen_c)):
        res.metrics["CLAP"] = {**A.clap_score(clap.text_embeddings(texts), np.stack(gen_c)), "model": clap.name,
                               "text_column": spec.text_column}
    if spec.visual_column and not skip("Alignment rank", "aligner", 2, len(a)):
        res.metrics["Alignment rank"] = {**A.alignment_rank(np.stack(q), np.stack(a)), "model": aligner.name}
    if spec.visual_column:
        if not others:
            res.skipped[IB_RANK] = "needs other systems' outputs for the same inputs (compare / --compare NAME=DIR)"
        elif not skip(IB_RANK, "aligner", 1, len(ib_q)):
            res.metrics[IB_RANK] = {**A.ib_rank(np.stack(ib_q), {k: np.stack(v) for k, v in ib_sys.items()}, EVALUATED),
                                    "model": aligner.name, "inputs_left_out": ib_left_out}
    if spec.kind == "editing" and not skip("LSD", None, 1, len(lsd)):
        by_op = {op: float(np.mean([v for v, o in zip(lsd, ops) if o == op])) for op in sorted(set(ops))}
        res.metrics["LSD"] = {"score": float(np.mean(lsd)), "score_db": 10 * float(np.mean(lsd)), "pairs": len(lsd),
                              "by_operation": by_op, "settings": A.LSD_SETTINGS}


EVALUATED = "evaluated"  # the system under evaluation, among the compared ones of the IB rank
IB_RANK = "IB rank (paper)"


def _other_profiles(others: dict[str, Predictions], rid: str, aligner) -> dict[str, np.ndarray] | None:
    """Each compared system's aligner profile of its clip for record ``rid``; None if any lacks a decodable clip."""
    out = {}
    for name, p in others.items():
        path = p.audio(rid)
        if path is None:
            return None
        try:
            y, sr = decode_audio(path)
        except Exception:
            return None
        out[name] = aligner.audio_profile(y, sr)
    return out


def score_task(spec: TaskSpec, data_root: str, predictions: str | Path, cache: ModelCache, split: str = "eval",
               limit: int | None = None, compare: dict[str, str] | None = None) -> TaskResult:
    res = TaskResult(spec.dataset, spec.task, spec.label, spec.kind)
    try:
        records = [r for r in iter_records(data_root, spec.dataset, split) if spec.matches(r["task"])]
    except FileNotFoundError as e:  # that dataset was not built: its rows say so, the others are scored
        res.skipped["all"] = str(e)
        return res
    records = records[:limit] if limit else records
    res.records = len(records)
    if not records:
        res.skipped["all"] = f"no {spec.task} records in the {split} split"
        return res
    preds = Predictions(predictions, spec.dataset)
    if spec.kind == "understanding":
        score_understanding(spec, records, preds, cache.models, res)
    else:
        others = {name: Predictions(d, spec.dataset) for name, d in (compare or {}).items() if name != EVALUATED}
        score_audio(spec, records, preds, cache, res, others=others or None)
    return res


def score_musicqa(musicqa: str | Path, audio_dir: str | Path, predictions: str | Path, cache: ModelCache,
                  limit: int | None = None) -> TaskResult:
    """Table 2 as the paper scores it: every (question, answer) pair of MusicQA's eval file against the
    predictions; entries the reader refuses are ``invalid`` with their reasons."""
    spec = MUSICQA_TASK
    res = TaskResult(spec.dataset, spec.task, spec.label, spec.kind)
    qa = MQ.read_musicqa(musicqa, audio_dir, limit=limit)
    res.invalid = dict(qa.skipped)
    res.records = len(qa.records)
    if not qa.records:
        res.skipped["all"] = f"no usable question-answer pair in {musicqa}"
        return res
    score_understanding(spec, qa.records, MusicQAPredictions(predictions, qa.records), cache.models, res)
    return res


def tasks_with(datasets, musicqa: str | Path | None = None) -> list[TaskSpec]:
    """The dataset tasks to score: with ``musicqa`` the MUCaps captioning row gives way to MusicQA (Table 2)."""
    return [t for t in tasks_for(datasets) if not (musicqa and t.kind == "understanding")]


def tasks_for(datasets: list[str] | tuple[str, ...] | None) -> list[TaskSpec]:
    wanted = {d.lower() for d in (datasets or DATASET_NAMES)}
    unknown = wanted - {d.lower() for d in DATASET_NAMES}
    if unknown:
        raise ValueError(f"unknown datasets {sorted(unknown)}; expected some of {list(DATASET_NAMES)}")
    return [t for t in TASKS if t.dataset.lower() in wanted]


def evaluate(predictions: str | Path, data_root: str, datasets=None, models: EvalModels | None = None,
             split: str = "eval", limit: int | None = None, musicqa: str | Path | None = None,
             musicqa_audio: str | Path | None = None, compare: dict[str, str] | None = None) -> dict:
    """Score every task of ``datasets`` (Table 2 on MusicQA when ``musicqa`` is given); the JSON-ready
    result that ``metrics.report`` renders."""
    if musicqa and not musicqa_audio:
        raise ValueError("musicqa needs musicqa_audio, the folder of its audio files")
    cache = ModelCache(models or EvalModels())
    results = [score_musicqa(musicqa, musicqa_audio, predictions, cache, limit)] if musicqa else []
    results += [score_task(t, data_root, predictions, cache, split, limit, compare) for t in tasks_with(datasets, musicqa)]
    context = {"musicqa": str(musicqa), "musicqa_audio": str(musicqa_audio)} if musicqa else {}
    if compare:
        context["compare"] = {k: str(v) for k, v in compare.items()}
    return report.assemble(results, cache.describe(), data_root=str(data_root), predictions=str(predictions), split=split,
                           **context)


def generate_with_checkpoint(checkpoint: str, data_root: str, datasets, out_dir: str | Path, split: str = "eval",
                             limit: int | None = None, device: str | None = None, seed: int = 0) -> Path:
    """Run a trained MuMu-LLaMA checkpoint over the eval split, writing predictions in the layout above.

    Uses ``model.generate.write_predictions(checkpoint, data_root, datasets, out_dir, split, limit)``
    when the model package provides it, else ``model.generate.load_for_inference`` + ``generate``
    through ``_write_with_generate``. Without ``model/generate.py`` it fails with a clear error.
    """
    import importlib

    try:
        gen = importlib.import_module("model.generate")  # sys.modules first, so a stand-in can take its place
    except ImportError as e:
        raise RuntimeError(
            "checkpoint mode needs the model package's model/generate.py (load_for_inference + generate, or "
            f"write_predictions), which cannot be imported ({e}). Write predictions another way and pass "
            "--predictions DIR.") from e
    out = Path(out_dir)
    wanted = list(datasets or DATASET_NAMES)
    if hasattr(gen, "write_predictions"):
        gen.write_predictions(checkpoint=checkpoint, data_root=data_root, datasets=wanted, out_dir=out, split=split,
                              limit=limit)
    elif hasattr(gen, "load_for_inference") and hasattr(gen, "generate"):
        _write_with_generate(gen, checkpoint, data_root, wanted, out, split, limit, device, seed)
    else:
        raise RuntimeError("model/generate.py provides neither write_predictions nor load_for_inference + generate")
    return out


def _write_with_generate(gen, checkpoint: str, data_root: str, datasets: list[str], out: Path, split: str,
                         limit: int | None, device: str | None, seed: int) -> None:
    """One ``generate`` call per eval record: the record's human turn as the prompt, its input media
    (music for captioning, the input clip for editing, the image, the video) beside it; text for
    understanding tasks (``music="never"``), music for the others (``music="always"``)."""
    model, procs = gen.load_for_inference(None, checkpoint, device)
    for spec in tasks_for(datasets):
        folder = out / spec.dataset
        folder.mkdir(parents=True, exist_ok=True)
        n = 0
        for r in iter_records(data_root, spec.dataset, split):
            if not spec.matches(r["task"]):
                continue
            if limit and n >= limit:
                break
            n += 1
            prompt = next(t["value"] for t in r["conversation"] if t["from"] == "human")
            inputs = {}
            if spec.kind == "understanding":
                inputs["audio"] = media_bytes(r["audio"])
            elif spec.kind == "editing":
                inputs["audio"] = media_bytes(r["input_audio"])
            elif spec.visual_column:
                inputs[spec.visual_column] = media_bytes(r[spec.visual_column])
            res = gen.generate(model, procs, prompt, music="never" if spec.kind == "understanding" else "always",
                               seed=seed, **inputs)
            if spec.kind == "understanding":
                (folder / f"{r['id']}.txt").write_text(res.text, encoding="utf-8")
            elif res.audio is not None:
                sf.write(folder / f"{r['id']}.wav", np.asarray(res.audio, dtype=np.float32).reshape(-1), int(res.sample_rate))
            else:
                log.warning("%s: the model produced no music", r["id"])
