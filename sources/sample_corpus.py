"""The offline sample corpus: an AudioSet-style local mirror made on this machine.

Each clip is a short arrangement composed from a seed (a lead, a chordal part, usually bass
and drums) in a known key and tempo, rendered from MIDI by FluidSynth with the General MIDI
soundfont. Beside the audio the mirror holds a still (a real photograph shipped with
scikit-image, or a generated picture), a short video made from it by ffmpeg, a segments CSV in
Google's AudioSet format with real ontology label ids, and a ground-truth JSONL file.

Everything derives from ``(seed, index)``, so the same seed gives the same corpus.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf
from PIL import Image, ImageDraw, ImageFilter

from mumu.failures import Failure
from mumu.store import Store

PITCH_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
MAJOR = [0, 2, 4, 5, 7, 9, 11]
MINOR = [0, 2, 3, 5, 7, 8, 10]
MUSIC_MID = "/m/04rlf"


@dataclass(frozen=True)
class Instrument:
    name: str
    program: int
    family: str
    labels: tuple[str, ...]  # AudioSet ontology ids
    low: int  # comfortable MIDI range
    high: int


INSTRUMENTS = {
    i.name: i
    for i in [
        Instrument("piano", 0, "keyboard", ("/m/05r5c",), 48, 84),
        Instrument("electric piano", 4, "keyboard", ("/m/01s0ps",), 48, 84),
        Instrument("acoustic guitar", 25, "guitar", ("/m/042v_gx", "/m/0342h"), 45, 76),
        Instrument("electric guitar", 27, "guitar", ("/m/02sgy", "/m/0342h"), 45, 79),
        Instrument("bass guitar", 33, "bass", ("/m/018vs",), 28, 50),
        Instrument("string section", 48, "strings", ("/m/02qmj0d", "/m/0l14_3"), 48, 84),
        Instrument("violin", 40, "strings", ("/m/07y_7", "/m/0l14_3"), 55, 88),
        Instrument("cello", 42, "strings", ("/m/01xqw", "/m/0l14_3"), 36, 64),
        Instrument("trumpet", 56, "brass", ("/m/07gql", "/m/01kcd"), 55, 79),
        Instrument("trombone", 57, "brass", ("/m/07c6l", "/m/01kcd"), 40, 67),
        Instrument("french horn", 60, "brass", ("/m/0319l", "/m/01kcd"), 45, 72),
        Instrument("saxophone", 65, "reed", ("/m/06ncr",), 49, 76),
        Instrument("clarinet", 71, "reed", ("/m/01wy6",), 50, 82),
        Instrument("flute", 73, "pipe", ("/m/0l14j_",), 60, 93),
        Instrument("church organ", 19, "organ", ("/m/013y1f",), 36, 84),
        Instrument("hammond organ", 16, "organ", ("/m/03gvt", "/m/013y1f"), 36, 84),
        Instrument("synth lead", 81, "synth", ("/m/0l14qv",), 48, 84),
        Instrument("synth pad", 89, "synth", ("/m/0l14qv",), 48, 79),
        Instrument("marimba", 12, "mallet", ("/m/0dwsp",), 48, 84),
        Instrument("vibraphone", 11, "mallet", ("/m/0dwt5",), 53, 89),
        Instrument("harp", 46, "strings", ("/m/03m5k",), 40, 88),
        Instrument("accordion", 21, "reed", ("/m/0mkg",), 53, 81),
    ]
}
DRUMS = Instrument("drum kit", 0, "drums", ("/m/02hnl",), 35, 81)
LEADS = ["piano", "electric guitar", "violin", "trumpet", "saxophone", "clarinet", "flute", "synth lead",
         "marimba", "vibraphone", "acoustic guitar", "french horn", "accordion", "hammond organ", "cello", "harp"]
CHORDAL = ["piano", "electric piano", "acoustic guitar", "string section", "church organ", "synth pad", "harp", "hammond organ"]
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "motorcycle"]


@dataclass(frozen=True)
class ClipSpec:
    index: int
    ytid: str
    start_s: int
    tempo_bpm: int
    tonic: int
    mode: str  # major | minor
    lead: str
    chords: str
    bass: bool
    drums: bool
    gain: float  # peak amplitude after normalisation
    picture: str  # photo:<name> or generated

    @property
    def key(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    @property
    def stem(self) -> str:
        return f"{self.ytid}_{self.start_s}"

    @property
    def instruments(self) -> list[Instrument]:
        parts = [INSTRUMENTS[self.lead]]
        if self.chords != self.lead:
            parts.append(INSTRUMENTS[self.chords])
        if self.bass:
            parts.append(INSTRUMENTS["bass guitar"])
        if self.drums:
            parts.append(DRUMS)
        return parts

    @property
    def labels(self) -> list[str]:
        out = [MUSIC_MID]
        for inst in self.instruments:
            out += [m for m in inst.labels if m not in out]
        return out

    def ground_truth(self) -> dict:
        d = asdict(self)
        d.update(key=self.key, stem=self.stem, instruments=[i.name for i in self.instruments],
                 families=sorted({i.family for i in self.instruments}), labels=self.labels)
        return d


def youtube_like_id(seed: int, index: int) -> str:
    """An 11-character id in YouTube's alphabet, derived from the seed (not a real video)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    digest = hashlib.sha256(f"mumu-sample:{seed}:{index}".encode()).digest()
    return "".join(alphabet[b % 64] for b in digest[:11])


def plan_corpus(n: int, seed: int, real_photo_share: float = 0.5) -> list[ClipSpec]:
    rng = np.random.default_rng(seed)
    leads = list(rng.permutation(LEADS))
    chordal = list(rng.permutation(CHORDAL))
    specs = []
    for i in range(n):
        lead = str(leads[i % len(leads)])
        chords = str(chordal[(i // 2) % len(chordal)])
        if chords == lead:
            chords = str(chordal[(i // 2 + 1) % len(chordal)])
        photo = rng.random() < real_photo_share
        specs.append(
            ClipSpec(
                index=i,
                ytid=youtube_like_id(seed, i),
                start_s=int(rng.integers(0, 30)) * 10,
                tempo_bpm=int(rng.integers(72, 151)),
                tonic=int(rng.integers(0, 12)),
                mode="major" if rng.random() < 0.55 else "minor",
                lead=lead,
                chords=chords,
                bass=bool(rng.random() < 0.8),
                drums=bool(rng.random() < 0.7),
                gain=float(np.round(rng.uniform(0.35, 0.9), 3)),
                picture=f"photo:{PHOTOS[int(rng.integers(0, len(PHOTOS)))]}" if photo else "generated",
            )
        )
    return specs


# --- composition -------------------------------------------------------------------------------

def _fit(pitch: int, inst: Instrument) -> int:
    while pitch < inst.low:
        pitch += 12
    while pitch > inst.high:
        pitch -= 12
    return pitch


def compose(spec: ClipSpec, seconds: float) -> pretty_midi.PrettyMIDI:
    rng = np.random.default_rng([spec.index, spec.tempo_bpm, spec.tonic])
    scale = MAJOR if spec.mode == "major" else MINOR
    progression = [0, 4, 5, 3] if spec.mode == "major" else [0, 5, 2, 6]
    beat = 60.0 / spec.tempo_bpm
    bars = math.ceil((seconds + 1.0) / (4 * beat))
    pm = pretty_midi.PrettyMIDI(initial_tempo=spec.tempo_bpm)
    base = 60 + spec.tonic

    def degree(d: int, octave: int = 0) -> int:
        return base + 12 * (octave + d // 7) + scale[d % 7]

    lead_i = INSTRUMENTS[spec.lead]
    chord_i = INSTRUMENTS[spec.chords]
    lead = pretty_midi.Instrument(program=lead_i.program, name=lead_i.name)
    chords = pretty_midi.Instrument(program=chord_i.program, name=chord_i.name)
    bass = pretty_midi.Instrument(program=INSTRUMENTS["bass guitar"].program, name="bass guitar")
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="drum kit")

    for bar in range(bars):
        root = progression[bar % len(progression)] if bar < bars - 1 else 0
        t0 = bar * 4 * beat
        triad = [degree(root + k) for k in (0, 2, 4)]
        if chord_i.family in ("guitar", "keyboard") or chord_i.name == "harp":
            for step in range(8):  # arpeggio in eighths
                p = _fit(triad[step % 3] - 12 * (step % 2 == 0 and step > 3), chord_i)
                chords.notes.append(pretty_midi.Note(int(rng.integers(60, 85)), p, t0 + step * beat / 2, t0 + (step + 1) * beat / 2))
        else:
            for p in triad:
                chords.notes.append(pretty_midi.Note(70, _fit(p - 12, chord_i), t0, t0 + 4 * beat - 0.02))
        # melody: chord tones on strong beats, scale steps between
        t, pos = t0, root + 7
        while t < t0 + 4 * beat - 1e-6:
            dur = beat if rng.random() < 0.6 else beat / 2
            on_beat = abs(((t - t0) / beat) - round((t - t0) / beat)) < 1e-6
            if on_beat:
                pos = root + 7 + int(rng.choice([0, 2, 4]))
            else:
                pos += int(rng.choice([-1, 1]))
            if rng.random() > 0.1:
                lead.notes.append(pretty_midi.Note(int(rng.integers(80, 110)), _fit(degree(pos), lead_i), t, t + dur * 0.9))
            t += dur
        if spec.bass:
            for b in range(4):
                p = degree(root, -2) if b % 2 == 0 else degree(root + 4, -2)
                bass.notes.append(pretty_midi.Note(95, _fit(p, INSTRUMENTS["bass guitar"]), t0 + b * beat, t0 + (b + 0.9) * beat))
        if spec.drums:
            for e in range(8):
                te = t0 + e * beat / 2
                drums.notes.append(pretty_midi.Note(70 + 10 * (e % 2 == 0), 42, te, te + 0.05))  # closed hi-hat
                if e in (0, 4):
                    drums.notes.append(pretty_midi.Note(110, 36, te, te + 0.1))  # kick
                if e in (2, 6):
                    drums.notes.append(pretty_midi.Note(100, 38, te, te + 0.1))  # snare
    pm.instruments += [chords, lead]
    if spec.bass:
        pm.instruments.append(bass)
    if spec.drums:
        pm.instruments.append(drums)
    return pm


def render(spec: ClipSpec, seconds: float, sample_rate: int, soundfont: str) -> np.ndarray:
    if not Path(soundfont).exists():
        raise FileNotFoundError(f"soundfont {soundfont} not found: install fluid-soundfont-gm (apt) or set corpus.soundfont")
    from mumu.media import FLUIDSYNTH_LOCK

    with FLUIDSYNTH_LOCK:  # FluidSynth's state is process-wide: one render at a time
        audio = compose(spec, seconds).fluidsynth(fs=sample_rate, synthesizer=soundfont)
    n = int(round(seconds * sample_rate))
    audio = np.pad(audio, (0, max(0, n - len(audio))))[:n]
    peak = float(np.max(np.abs(audio))) or 1.0
    return (audio / peak * spec.gain).astype(np.float32)


# --- pictures and videos -------------------------------------------------------------------------

def _photo(name: str) -> np.ndarray:
    import skimage.data

    if name == "motorcycle":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def picture(spec: ClipSpec, size: int) -> Image.Image:
    if spec.picture.startswith("photo:"):
        img = Image.fromarray(_photo(spec.picture.split(":", 1)[1])).convert("RGB")
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        return img.resize((size, size), Image.Resampling.LANCZOS)
    rng = np.random.default_rng([spec.index, 7])
    warm = spec.mode == "major"
    top = np.array([250, 180, 90] if warm else [40, 70, 140], dtype=float)
    bottom = np.array([200, 60, 80] if warm else [10, 20, 50], dtype=float)
    ramp = np.linspace(0, 1, size)[:, None, None]
    arr = (top * (1 - ramp) + bottom * ramp) * np.ones((size, size, 3))
    img = Image.fromarray(arr.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 9))):
        x, y = rng.integers(0, size, 2)
        r = int(rng.integers(size // 16, size // 4))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        box = (int(x - r), int(y - r), int(x + r), int(y + r))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return img.filter(ImageFilter.GaussianBlur(1.0))


def jpeg_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_video(still: Image.Image, audio_path: str, out_path: str, seconds: float, size: int, fps: int) -> None:
    """A slow zoom over the still with the clip's audio, bit-exact for the same inputs."""
    with tempfile.TemporaryDirectory() as tmp:
        png = f"{tmp}/still.png"
        still.resize((size * 2, size * 2), Image.Resampling.LANCZOS).save(png)
        frames = int(round(seconds * fps))
        cmd = [
            "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
            "-loop", "1", "-framerate", str(fps), "-i", png, "-i", audio_path,
            "-vf", f"zoompan=z='1+0.3*on/{frames}':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s={size}x{size}:fps={fps},format=yuv420p",
            "-frames:v", str(frames), "-t", f"{seconds}",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-threads", "1",
            "-c:a", "aac", "-b:a", "64k", "-ac", "1",
            "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
            "-movflags", "+faststart", out_path,
        ]
        subprocess.run(cmd, check=True, capture_output=True)


# --- writing ------------------------------------------------------------------------------------

def render_clip(spec: ClipSpec, store: Store, media_dir: str, seconds: float, cfg) -> dict:
    """Write <stem>.flac, <stem>.jpg and <stem>.mp4 for one clip; returns its ground truth."""
    audio = render(spec, seconds, cfg.render_sample_rate, cfg.soundfont)
    buf = io.BytesIO()
    sf.write(buf, audio, cfg.render_sample_rate, format="FLAC", subtype="PCM_16")
    flac = store.path(media_dir, f"{spec.stem}.flac")
    store.write_bytes(flac, buf.getvalue())
    still = picture(spec, cfg.image_size)
    store.write_bytes(store.path(media_dir, f"{spec.stem}.jpg"), jpeg_bytes(still))
    with tempfile.TemporaryDirectory() as tmp:
        local_audio = f"{tmp}/a.flac"
        Path(local_audio).write_bytes(buf.getvalue())
        mp4 = f"{tmp}/v.mp4"
        make_video(still, local_audio, mp4, seconds, cfg.video_size, cfg.video_fps)
        store.write_bytes(store.path(media_dir, f"{spec.stem}.mp4"), Path(mp4).read_bytes())
    return spec.ground_truth()


def segments_csv(specs: list[ClipSpec], seconds: float) -> str:
    """Google's AudioSet CSV variant: three '#' lines, ', ' separators, quoted label lists."""
    lines = [
        "# Segments csv created by mumu sample-corpus (synthetic clips, not YouTube videos)",
        f"# num_ytids={len(specs)}, num_segs={len(specs)}, num_unique_labels={len({m for s in specs for m in s.labels})}, num_positive_labels={sum(len(s.labels) for s in specs)}",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    for s in specs:
        lines.append(f'{s.ytid}, {s.start_s:.3f}, {s.start_s + seconds:.3f}, "{",".join(s.labels)}"')
    return "\n".join(lines) + "\n"


def ground_truth_jsonl(specs: list[ClipSpec]) -> str:
    return "".join(json.dumps(s.ground_truth(), sort_keys=True) + "\n" for s in specs)


# --- the stage -----------------------------------------------------------------------------------

CORPUS_DIR = "corpus/audioset"


def corpus_shard(store: Store, cfg, shard: int, specs: list[ClipSpec]):
    """Render one shard of the corpus (media files) under the stage protocol."""
    import pyarrow as pa

    from mumu.stage import run_shard
    from mumu.store import fingerprint_of

    media_dir = f"{CORPUS_DIR}/media"
    fp = fingerprint_of("corpus", [asdict(s) for s in specs], cfg.corpus.model_dump(), cfg.audio.clip_seconds)

    def work():
        rows, failures = [], []
        for spec in specs:
            try:
                gt = render_clip(spec, store, media_dir, cfg.audio.clip_seconds, cfg.corpus)
                rows.append({"stem": spec.stem, "ground_truth": json.dumps(gt, sort_keys=True)})
            except (subprocess.CalledProcessError, OSError, ValueError) as e:
                detail = e.stderr.decode(errors="replace")[:300] if isinstance(e, subprocess.CalledProcessError) else str(e)
                failures.append(Failure("render_failed", detail).row(spec.stem, "corpus"))
        table = pa.table({"stem": [r["stem"] for r in rows], "ground_truth": [r["ground_truth"] for r in rows]})
        return table, failures

    return run_shard(store, "corpus", shard, fp, len(specs), work)


def write_corpus_index(store: Store, cfg, specs: list[ClipSpec], rendered: set[str]) -> dict:
    """The segments CSV and ground truth, for the clips that rendered; written after all media."""
    kept = [s for s in specs if s.stem in rendered]
    base = store.path(CORPUS_DIR)
    store.write_bytes(f"{base}/ground_truth.jsonl", ground_truth_jsonl(kept).encode())
    store.write_bytes(f"{base}/balanced_train_segments.csv", segments_csv(kept, cfg.audio.clip_seconds).encode())
    return {"clips": len(kept), "dir": base}


# --- Slakh-style multitracks and Looperman-style loops for MUEdit ---------------------------------

SLAKH_CLASS = {"keyboard": "Piano", "guitar": "Guitar", "bass": "Bass", "strings": "Strings", "brass": "Brass",
               "reed": "Reed", "pipe": "Pipe", "organ": "Organ", "mallet": "Chromatic Percussion", "drums": "Drums"}
SLAKH_DIR = "corpus/slakh"
LOOPS_DIR = "corpus/looperman"


def slakh_class(inst: Instrument) -> str:
    if inst.family == "synth":
        return "Synth Pad" if "pad" in inst.name else "Synth Lead"
    return SLAKH_CLASS[inst.family]


def write_slakh_track(store: Store, spec: ClipSpec, seconds: float) -> str:
    """A track in Slakh2100's layout: metadata.yaml and one MIDI file per stem (audio is rendered at
    ingest, as for Slakh's MIDI-only releases). Stems are the arrangement's instruments."""
    import yaml

    name = f"Track{90000 + spec.index:05d}"
    pm = compose(spec, seconds)
    stems = {}
    for k, inst in enumerate(pm.instruments):
        sid = f"S{k:02d}"
        known = DRUMS if inst.is_drum else next(i for i in INSTRUMENTS.values() if i.name == inst.name)
        one = pretty_midi.PrettyMIDI(initial_tempo=spec.tempo_bpm)
        one.instruments.append(inst)
        buf = io.BytesIO()
        one.write(buf)
        store.write_bytes(store.path(SLAKH_DIR, name, "MIDI", f"{sid}.mid"), buf.getvalue())
        stems[sid] = {"audio_rendered": False, "inst_class": slakh_class(known), "is_drum": bool(inst.is_drum),
                      "midi_program_name": "Drums" if inst.is_drum else pretty_midi.program_to_instrument_name(inst.program),
                      "midi_saved": True, "plugin_name": "FluidR3_GM.sf2", "program_num": 128 if inst.is_drum else inst.program}
    meta = {"UUID": hashlib.sha256(name.encode()).hexdigest()[:32], "audio_dir": "stems", "midi_dir": "MIDI",
            "normalized": False, "stems": stems}
    store.write_bytes(store.path(SLAKH_DIR, name, "metadata.yaml"), yaml.safe_dump(meta, sort_keys=True).encode())
    return name


def write_loop(store: Store, spec: ClipSpec, cfg) -> dict:
    """A Looperman-style loop: two bars of the arrangement, with the page metadata beside it."""
    bars = 2
    seconds = bars * 4 * 60.0 / spec.tempo_bpm
    audio = render(spec, seconds, cfg.render_sample_rate, cfg.soundfont)
    buf = io.BytesIO()
    sf.write(buf, audio, cfg.render_sample_rate, format="WAV", subtype="PCM_16")
    loop_id = f"sample{spec.index:04d}"
    store.write_bytes(store.path(LOOPS_DIR, f"{loop_id}.wav"), buf.getvalue())
    lead = INSTRUMENTS[spec.lead]
    return {"file": f"{loop_id}.wav", "loop_id": loop_id, "title": f"{spec.lead.title()} loop in {spec.key}",
            "bpm": spec.tempo_bpm, "key": spec.key, "genre": "Sample", "category": lead.family.title(),
            "author": "mumu sample-corpus", "licence": "CC0-1.0 (synthetic sample)"}


def edit_sources_shard(store: Store, cfg):
    """The sample corpus's MUEdit sources (Slakh-style tracks, loops) under the stage protocol."""
    import pyarrow as pa

    from mumu.stage import run_shard
    from mumu.store import fingerprint_of

    c = cfg.corpus
    tracks = plan_corpus(c.slakh_tracks, c.seed + 101, 0.0)
    loops = plan_corpus(c.loops, c.seed + 202, 0.0)
    fp = fingerprint_of("corpus-edit", [asdict(s) for s in tracks + loops], c.model_dump())

    def work():
        names = [write_slakh_track(store, s, c.slakh_seconds) for s in tracks]
        meta = [write_loop(store, s, c) for s in loops]
        store.write_json(store.path(LOOPS_DIR, "metadata.json"), meta)
        return pa.table({"kind": ["slakh"] * len(names) + ["loop"] * len(meta),
                         "name": names + [m["loop_id"] for m in meta]}), []

    return run_shard(store, "corpus-edit", 0, fp, len(tracks) + len(loops), work)
