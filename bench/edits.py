"""Throughput of the MUEdit edits, side by side in one run, and the time-stretch candidates.

Usage: python bench/edits.py [--files 6] [--seconds 10] [--sr 24000] [--channels 1] [--rounds 2]
                             [--no-choose] [--out bench-results/edits.json]

Throughput is audio-seconds per CPU-second, CPU time counting this process and the child
processes it waited for (the sox, ffmpeg and rubberband programs). For every edit of the paper
(speed 0.5/0.7/1.3/1.5, pitch -200/-100/+100/+200 cents) and every test file, in turn:

- ours:        ``builders.edits.apply_edit`` on the decoded array, as the pipeline calls it
- ours wav:    wav file -> ``apply_edit`` -> wav file (soundfile, 16-bit PCM both ways), the CLI's I/O
- sox CLI:     ``sox -D in.wav out.wav tempo -m 1/f`` / ``... pitch c/100`` (subprocess)
- reference:   the published approach: an mp3 round trip through ffmpeg (wav -> mp3, mp3 ->
               pcm) around pytsmod's WSOLA (speed) or the sox CLI (pitch), the result encoded
               to mp3 again

Target: ours >= 0.8 x the raw sox CLI. The reference runs in the first round only (it is slow). The test files are synthetic music (chords with
harmonics, a bass line and noise-burst drums), written as 16-bit wav.

The second part (``--no-choose`` skips it) measures the time-stretch candidates on pure tones
— pitch drift of the spectral peak in cents, raw length error, throughput — the table that
chose SoX ``tempo -m`` (see ``builders/edits.py``). Results go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import save  # noqa: E402
from builders.edits import apply_edit, dominant_frequency, run_sox  # noqa: E402

SPEEDS = [0.5, 0.7, 1.3, 1.5]
CENTS = [-200, -100, 100, 200]


def cpu() -> float:
    """CPU seconds of this process plus its waited-for children (getrusage: microsecond resolution)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def music(seed: int, seconds: float, sr: int, channels: int) -> np.ndarray:
    """A few seconds of synthetic music: chords with harmonics, a bass line, noise-burst drums."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    y = np.zeros(n)
    beat = 60 / rng.uniform(80, 140)
    root = 110 * 2 ** (rng.integers(0, 12) / 12)
    for i, start in enumerate(np.arange(0, seconds, 4 * beat)):
        seg = (t >= start) & (t < start + 4 * beat)
        env = np.exp(-(t[seg] - start) * 1.5)
        for semis in (0, 4, 7) if i % 2 == 0 else (5, 9, 12):
            f = 2 * root * 2 ** (semis / 12)
            y[seg] += sum(0.08 / k * np.sin(2 * np.pi * f * k * t[seg]) for k in (1, 2, 3)) * env
        y[seg] += 0.15 * np.sin(2 * np.pi * root / 2 * t[seg]) * env
    for start in np.arange(0, seconds, beat):
        i = int(start * sr)
        m = min(n - i, int(0.08 * sr))
        y[i : i + m] += 0.2 * rng.standard_normal(m) * np.exp(-np.arange(m) / (0.015 * sr))
    y = 0.5 * y / np.max(np.abs(y))
    out = np.stack([y, np.roll(y, 7)]) if channels == 2 else y[None, :]
    return out.astype(np.float32)


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ours_files(src: str, dst: str, op: str, value: float) -> None:
    y, sr = sf.read(src, dtype="float32", always_2d=True)
    key = "speed_factor" if op == "speed" else "pitch_cents"
    out = apply_edit(op, y.T, sr, {key: value}).output
    sf.write(dst, out.T, sr, subtype="PCM_16")


def sox_effect(op: str, value: float) -> list[str]:
    # sox CLI: tempo takes new/old tempo = 1 / speed_factor; pitch takes cents
    return ["tempo", "-m", f"{1 / value:.10g}"] if op == "speed" else ["pitch", f"{value:.10g}"]


def sox_cli(src: str, dst: str, op: str, value: float) -> None:
    run(["sox", "-D", src, dst, *sox_effect(op, value)])


def reference(src: str, dst: str, op: str, value: float, tmp: str, sr: int, channels: int) -> None:
    """mp3 round trip through ffmpeg around pytsmod WSOLA (speed) or sox pitch, as the published code."""
    import pytsmod

    ff = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y"]
    mp3_in, wav_mid, wav_out = (os.path.join(tmp, n) for n in ("ref_in.mp3", "ref_mid.wav", "ref_out.wav"))
    run([*ff, "-i", src, "-b:a", "192k", mp3_in])
    pcm = subprocess.run([*ff, "-i", mp3_in, "-f", "f32le", "-ac", str(channels), "-ar", str(sr), "-"],
                         check=True, capture_output=True).stdout
    y = np.frombuffer(pcm, dtype=np.float32).reshape(-1, channels).T
    if op == "speed":
        z = pytsmod.wsola(y, value)
        sf.write(wav_out, np.asarray(z).T, sr, subtype="PCM_16")
    else:
        sf.write(wav_mid, y.T, sr, subtype="PCM_16")
        run(["sox", "-D", wav_mid, wav_out, *sox_effect(op, value)])
    run([*ff, "-i", wav_out, "-b:a", "192k", dst])


def throughput(args) -> dict:
    methods = ["ours", "ours_wav", "sox_cli", "reference"]
    edits = [("speed", f) for f in SPEEDS] + [("pitch", c) for c in CENTS]
    cpu_s = {(m, e): 0.0 for m in methods for e in edits}
    audio_s = {(m, e): 0.0 for m in methods for e in edits}
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(args.files):
            p = os.path.join(tmp, f"in{i}.wav")
            sf.write(p, music(i, args.seconds, args.sr, args.channels).T, args.sr, subtype="PCM_16")
            files.append(p)
        arrays = [sf.read(p, dtype="float32", always_2d=True)[0].T for p in files]
        ours_files(files[0], os.path.join(tmp, "warm.wav"), "speed", 1.5)  # imports, sox format probe
        for r in range(args.rounds):
            for op, value in edits:
                for i, src in enumerate(files):
                    key = "speed_factor" if op == "speed" else "pitch_cents"
                    jobs = {
                        "ours": partial(apply_edit, op, arrays[i], args.sr, {key: value}),
                        "ours_wav": partial(ours_files, src, os.path.join(tmp, "o.wav"), op, value),
                        "sox_cli": partial(sox_cli, src, os.path.join(tmp, "s.wav"), op, value),
                        "reference": partial(reference, src, os.path.join(tmp, "r.mp3"), op, value, tmp, args.sr,
                                             args.channels),
                    }
                    order = methods if (r + i) % 2 == 0 else methods[::-1]  # alternate who goes first
                    for m in order:
                        if m == "reference" and r > 0:  # slow and not the target: one round is enough
                            continue
                        c0 = cpu()
                        jobs[m]()
                        cpu_s[(m, (op, value))] += cpu() - c0
                        audio_s[(m, (op, value))] += args.seconds
    rows = []
    for e in edits + [None]:
        keys = edits if e is None else [e]
        tp = {m: sum(audio_s[(m, k)] for k in keys) / max(sum(cpu_s[(m, k)] for k in keys), 1e-9) for m in methods}
        name = "all" if e is None else (f"speed x{e[1]:g}" if e[0] == "speed" else f"pitch {e[1]:+g} c")
        rows.append({"edit": name, **{m: round(tp[m], 1) for m in methods},
                     "ours_vs_sox_cli": round(tp["ours"] / tp["sox_cli"], 3),
                     "ours_wav_vs_sox_cli": round(tp["ours_wav"] / tp["sox_cli"], 3),
                     "ours_vs_reference": round(tp["ours"] / tp["reference"], 2)})
    print(f"\nEdit throughput, audio-seconds per CPU-second ({args.files} files x {args.seconds:g} s, {args.sr} Hz, "
          f"{args.channels} ch, {args.rounds} rounds)")
    head = (f"{'edit':<16}{'ours':>8}{'ours wav':>10}{'sox CLI':>9}{'ref':>8}{'ours/sox':>10}{'wav/sox':>9}"
            f"{'ours/ref':>10}")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['edit']:<16}{r['ours']:>8.0f}{r['ours_wav']:>10.0f}{r['sox_cli']:>9.0f}{r['reference']:>8.0f}"
              f"{r['ours_vs_sox_cli']:>10.2f}{r['ours_wav_vs_sox_cli']:>9.2f}{r['ours_vs_reference']:>10.1f}")
    return {"files": args.files, "seconds": args.seconds, "sample_rate": args.sr, "channels": args.channels,
            "rounds": args.rounds, "target_ours_vs_sox_cli": 0.8, "rows": rows}


def choose(sr: int = 44100, seconds: float = 10.0) -> list[dict]:
    """The time-stretch candidates on pure tones: peak drift, raw length error, throughput."""
    import audiotsm
    import pyrubberband
    import pytsmod
    from audiotsm.io.array import ArrayReader, ArrayWriter

    def sox_tempo(y, f, *opts):
        return run_sox(y[None, :], sr, ["tempo", *opts, f"{1 / f:.10g}"])[0]

    def atsm(y, f):
        w = ArrayWriter(1)
        audiotsm.wsola(1, speed=1 / f).run(ArrayReader(y[None, :]), w)
        return w.data[0]

    candidates = {
        "sox tempo -m": lambda y, f: sox_tempo(y, f, "-m"),
        "sox tempo": sox_tempo,
        "pytsmod wsola": lambda y, f: pytsmod.wsola(y, f),
        "audiotsm wsola": atsm,
        "rubberband": lambda y, f: pyrubberband.time_stretch(y, sr, 1 / f),
    }
    t = np.arange(int(sr * seconds)) / sr
    rows = []
    for name, fn in candidates.items():
        drift, err, used, audio = [], [], 0.0, 0.0
        for freq in (110.0, 440.0, 1000.0, 3000.0):
            y = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
            f0 = dominant_frequency(y[sr:-sr], sr)
            for f in SPEEDS:
                c0 = cpu()
                z = np.asarray(fn(y, f), dtype=np.float64).reshape(-1)
                used += cpu() - c0
                audio += seconds
                err.append((len(z) - round(len(y) * f)) / sr * 1000)
                mid = z[len(z) // 4 : 3 * len(z) // 4]
                drift.append(1200 * np.log2(dominant_frequency(mid, sr) / f0))
        rows.append({"implementation": name, "max_peak_drift_cents": round(float(np.max(np.abs(drift))), 2),
                     "length_error_ms": [round(min(err), 1), round(max(err), 1)],
                     "audio_s_per_cpu_s": round(audio / used, 1)})
    print(f"\nTime-stretch candidates on pure tones (110/440/1000/3000 Hz, {seconds:g} s at {sr} Hz, factors {SPEEDS})")
    head = f"{'implementation':<18}{'peak drift (cents)':>20}{'raw length error (ms)':>24}{'audio-s/CPU-s':>15}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        lo, hi = r["length_error_ms"]
        print(f"{r['implementation']:<18}{r['max_peak_drift_cents']:>20.2f}{f'{lo:+.1f} .. {hi:+.1f}':>24}"
              f"{r['audio_s_per_cpu_s']:>15.0f}")
    return rows


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--sr", type=int, default=24000)
    ap.add_argument("--channels", type=int, choices=(1, 2), default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-choose", action="store_true", help="skip the time-stretch candidates table")
    ap.add_argument("--out", default=None, help="default: $MUMU_BENCH_RESULTS/edits.json")
    args = ap.parse_args(argv)
    start = time.time()
    result = {"throughput": throughput(args)}
    if not args.no_choose:
        result["time_stretch_candidates"] = choose()
    result["wall_s"] = round(time.time() - start, 1)
    out = save("edits", result, args.out, sort_keys=False)
    print(f"\n{result['wall_s']} s; written to {out}")
    return result


if __name__ == "__main__":
    main()
