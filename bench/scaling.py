"""How the build's cost grows: MUCaps at 1x, 2x and 4x the base size, side by side in one run.

    python -m bench.scaling [--base 8]

Each size builds on a fresh copy of a corpus rendered once for the largest size (rendering is
not timed). The figure that matters is seconds per clip at 2x and 4x over 1x: near 1.0 means
linear growth; the fixed cost (Prefect's API start, planning) shows at the small end.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from bench.common import fresh_copy, rendered_corpus, save, timer


def build_once(root: str, clips: int) -> float:
    from flows.mucaps import build_mucaps

    with timer() as t:
        build_mucaps(data_root=root, overrides={"corpus.clips": clips, "targets.MUCaps": clips, "shards.items_per_shard": 4})
    return t["wall"]


def main(base: int = 8) -> dict:
    sizes = [base, 2 * base, 4 * base]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = rendered_corpus(os.path.join(tmp, "corpus"), sizes[-1])
        build_once(fresh_copy(corpus, os.path.join(tmp, "warm")), 2)  # start-up costs once, outside the figures
        rows = []
        for n in sizes:
            seconds = build_once(fresh_copy(corpus, os.path.join(tmp, f"x{n}")), n)
            rows.append({"clips": n, "seconds": round(seconds, 2), "seconds_per_clip": round(seconds / n, 3)})
    per = rows[0]["seconds_per_clip"]
    result = {"rows": rows, "per_clip_2x_over_1x": round(rows[1]["seconds_per_clip"] / per, 3),
              "per_clip_4x_over_1x": round(rows[2]["seconds_per_clip"] / per, 3)}
    save("scaling", result)
    return result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=int, default=8)
    print(main(ap.parse_args().base))
