"""How often the features annotator's tempo and key agree with the sample corpus ground truth.

Usage: python bench/features_accuracy.py [DATA_ROOT]   (default data/sample; run `make demo` first)
Tempo counts as right within 4% of the true BPM; half or double tempo (octave errors) count as
wrong and are reported apart. Key counts as right only when tonic and mode both match; the
common confusions (relative major/minor, the dominant) are reported apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import soundfile as sf

from annotators.features import PITCH_NAMES, measure


def main(root: str = "data/sample") -> dict:
    base = Path(root) / "corpus" / "audioset"
    truth = [json.loads(x) for x in (base / "ground_truth.jsonl").read_text().splitlines() if x.strip()]
    n = len(truth)
    tempo_ok = octave = key_ok = relative = fifth = 0
    for t in truth:
        y, sr = sf.read(base / "media" / f"{t['stem']}.flac", dtype="float32")
        f = measure(y, sr)
        ratio = f.tempo_bpm / t["tempo_bpm"]
        if abs(ratio - 1) <= 0.04:
            tempo_ok += 1
        elif abs(ratio - 2) <= 0.08 or abs(ratio - 0.5) <= 0.02:
            octave += 1
        if f.key == t["key"]:
            key_ok += 1
            continue
        tonic, mode = f.key.split()
        ti = PITCH_NAMES.index(tonic)
        rel = (t["tonic"] + (9 if t["mode"] == "major" else 3)) % 12
        if mode != t["mode"] and ti == rel:
            relative += 1
        elif mode == t["mode"] and ti == (t["tonic"] + 7) % 12:
            fifth += 1
    out = {"clips": n, "tempo_within_4pct": tempo_ok / n, "tempo_octave_errors": octave / n,
           "key_exact": key_ok / n, "key_relative_confusions": relative / n, "key_dominant_confusions": fifth / n}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main(*sys.argv[1:])
