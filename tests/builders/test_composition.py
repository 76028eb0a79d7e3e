"""The composition section of a card and summary (builders/composition.py)."""

from builders.composition import composition_lines


def test_composition_says_targets_draws_and_decontamination():
    stats = {
        "targets": [{"tasks": "all", "unit": "clip", "target": 10, "built": 8, "kept": 8, "shortfall": 2,
                     "short_because": {"no_video": 3}}],
        "draw": {"lists": ["balanced_train_segments.csv"], "balance": True, "overlap": {"MUVideo": 8},
                 "train": {"pool": 40, "target": 10, "drawn": 11, "short": 0, "classes": {"Piano": 6, "Organ": 5}},
                 "eval": {"pool": 9, "target": 4, "drawn": 5, "short": 0, "classes": {"Piano": 5}}},
        "decontamination": {"removed_at_selection": {"MusicCaps": 7},
                            "lists": [{"name": "MusicCaps", "format": "musiccaps", "status": "loaded", "entries": 5521}]},
    }
    text = "\n".join(composition_lines(stats))
    assert "| all | clips | 10 | 8 | 8 | 2 | no_video 3 |" in text
    assert "balanced over instrument classes" in text and "MUVideo 8 clips" in text
    assert "| train | 40 | 10 | 11 | 0 | 2 | Piano 6 / Organ 5 |" in text
    assert "| MusicCaps | musiccaps | loaded | 5521 | 7 |" in text
    assert composition_lines({"splits": {}}) == []
