"""Throughput of the vllm backend against plain transformers ``generate``, side by side in one run.

The same tiny random LLaMA (hidden 128, 2 heads of 64, 2 layers; built here, nothing is
downloaded), the same chat-rendered prompts, the same sampling (temperature 0.6, top_p 0.8) and
the same output length (every answer exactly ``--tokens`` tokens: ``ignore_eos`` in vLLM,
``min_new_tokens`` in transformers), the same dtype. Three contenders:

* ``vllm``: the project's vllm backend (``VLLMAnnotator._generate``: one ``LLM.chat`` call for
  the whole batch, per-request seeds), engine in-process as on CPU workers;
* ``hf_sequential``: ``model.generate`` one prompt at a time (how a naive captioning loop runs);
* ``hf_batched``: ``model.generate`` on left-padded batches of ``--hf-batch`` prompts.

Generated tokens per second are the median (and the best) of ``--repeats`` timed rounds after a
warm-up, the contenders interleaved within each round so that a busy machine slows all of them
alike; ratios are printed against both transformers baselines. On CPU with a tiny model batching matters more
than the engine, so the batched ratio is the honest one to quote. Results go to
``bench-results/annotate.json``.

    python bench/annotate_throughput.py [--prompts 256] [--tokens 64] [--hf-batch 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TOPICS = ["a beach at sunset", "a rainy city street", "a crowded concert", "a quiet forest", "kids dancing",
          "a car chase at night", "a calm lake", "a busy market"]


def make_prompts(n: int) -> list[str]:
    return [f"Describe music for {TOPICS[i % len(TOPICS)]}, variation {i}, with instruments, tempo and mood."
            for i in range(n)]


def vllm_runner(model_dir: str, texts: list[str], tokens: int, dtype: str, seeded: bool):
    """(runner, info): the project's vllm backend on one batch of all prompts."""
    from annotators.base import Request
    from annotators.requests import build_annotator
    from annotators.vllm_backend import VLLMAnnotator

    ann = build_annotator(VLLMAnnotator, "text", model_dir, batch_size=len(texts),
                          options={"engine": {"max_model_len": 1024, "dtype": dtype}, "per_request_seed": seeded},
                          generation={"max_tokens": tokens})
    t0 = time.perf_counter()
    ann.setup()
    info = {"engine_start_s": round(time.perf_counter() - t0, 2)}
    chats = []
    for i, text in enumerate(texts):
        c = ann.builder.build(Request(f"bench-{i}", "response", context={"instruction": "x", "music_caption": "x"}))
        c.messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        c.params = {**c.params, "ignore_eos": True}
        c.output = dataclasses.replace(c.output, schema=None)  # plain text: no grammar in the way
        chats.append(c)

    def run() -> int:
        outs = ann._generate(chats)
        assert all(o.text is not None for o in outs)
        return len(chats) * tokens  # ignore_eos: every answer is exactly `tokens` long

    run.__dict__["annotator"] = ann
    return run, info


def hf_runner(model_dir: str, texts: list[str], tokens: int, dtype: str, batch: int):
    """(runner, info): plain transformers generate over the prompts, ``batch`` at a time."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    rendered = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
                for t in texts]
    kw = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True, temperature=0.6, top_p=0.8,
              pad_token_id=tok.pad_token_id)

    def one(chunk) -> int:
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, **kw)
        return int((out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0])

    def run() -> int:
        return sum(one(rendered[i:i + batch]) for i in range(0, len(rendered), batch))

    return run, {"batch": batch, "prompts": len(texts)}


def main(prompts: int = 256, tokens: int = 64, hf_batch: int = 64, sequential_prompts: int = 32,
         dtype: str = "float32", repeats: int = 5, out: str | None = None) -> dict:
    """Run the comparison with these sizes (``prompts``: how many prompts; ``sequential_prompts``:
    how many of them the one-at-a-time baseline answers); returns the result, also written to ``out``."""
    from bench.common import results_dir

    args = argparse.Namespace(prompts=prompts, tokens=tokens, hf_batch=hf_batch,
                              sequential_prompts=sequential_prompts, dtype=dtype, repeats=repeats,
                              out=out or os.path.join(results_dir(), "annotate.json"))
    from annotators.tiny_models import tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(tiny_llama(Path(tmp) / "tiny-llama"))
        texts = make_prompts(args.prompts)
        runners = {}
        runners["vllm"], vinfo = vllm_runner(model_dir, texts, args.tokens, args.dtype, seeded=True)
        ann = runners["vllm"].__dict__["annotator"]

        def engine_seed() -> int:  # the same engine, sampling left to the engine's seed
            ann.options["per_request_seed"] = False
            try:
                return runners["vllm"]()
            finally:
                ann.options["per_request_seed"] = True

        runners["vllm_engine_seed"] = engine_seed
        runners["hf_sequential"], sinfo = hf_runner(model_dir, texts[:args.sequential_prompts], args.tokens, args.dtype, 1)
        runners["hf_batched"], binfo = hf_runner(model_dir, texts, args.tokens, args.dtype, args.hf_batch)
        for run in runners.values():
            run()  # warm-up
        # interleaved: one run of each contender per round, so a busy machine slows all of them alike
        times: dict[str, list[float]] = {k: [] for k in runners}
        produced: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, run in runners.items():
                t = time.perf_counter()
                produced[name] = run()
                times[name].append(time.perf_counter() - t)
        ann.teardown()

    def summary(name: str, extra: dict) -> dict:
        med, best = statistics.median(times[name]), min(times[name])
        return {**extra, "seconds": round(med, 3), "tokens": produced[name],
                "tokens_per_s": round(produced[name] / med, 1), "best_tokens_per_s": round(produced[name] / best, 1),
                "runs_s": [round(t, 3) for t in times[name]]}

    vllm = summary("vllm", {**vinfo, "prompts": args.prompts, "per_request_seed": True})
    vllm_es = summary("vllm_engine_seed", {"prompts": args.prompts, "per_request_seed": False})
    seq = summary("hf_sequential", sinfo)
    batched = summary("hf_batched", binfo)
    load = os.getloadavg()

    import torch
    import transformers
    import vllm as vllm_pkg

    result = {
        "model": "tiny random LLaMA: hidden 128, 2 heads (head_dim 64), 2 layers, byte-level BPE vocab 600",
        "prompts": args.prompts, "output_tokens_per_prompt": args.tokens, "dtype": args.dtype,
        "sampling": {"temperature": 0.6, "top_p": 0.8},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "transformers": transformers.__version__, "vllm": vllm_pkg.__version__,
                    "torch_threads": torch.get_num_threads()},
        "load_average_after": [round(x, 2) for x in load],
        "vllm": vllm, "vllm_engine_seed": vllm_es, "hf_sequential": seq, "hf_batched": batched,
        "ratios": {"vllm_vs_hf_sequential": round(vllm["tokens_per_s"] / seq["tokens_per_s"], 2),
                   "vllm_vs_hf_batched": round(vllm["tokens_per_s"] / batched["tokens_per_s"], 2),
                   "vllm_engine_seed_vs_hf_sequential": round(vllm_es["tokens_per_s"] / seq["tokens_per_s"], 2),
                   "vllm_engine_seed_vs_hf_batched": round(vllm_es["tokens_per_s"] / batched["tokens_per_s"], 2),
                   "best_run_vllm_vs_hf_sequential": round(vllm["best_tokens_per_s"] / seq["best_tokens_per_s"], 2),
                   "best_run_vllm_vs_hf_batched": round(vllm["best_tokens_per_s"] / batched["best_tokens_per_s"], 2)},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'contender':<16}{'prompts':>9}{'tokens':>9}{'seconds':>10}{'tokens/s':>11}")
    print(f"{'vllm':<16}{args.prompts:>9}{vllm['tokens']:>9}{vllm['seconds']:>10}{vllm['tokens_per_s']:>11}")
    print(f"{'vllm engine seed':<16}{args.prompts:>9}{vllm_es['tokens']:>9}{vllm_es['seconds']:>10}"
          f"{vllm_es['tokens_per_s']:>11}")
    print(f"{'hf sequential':<16}{seq['prompts']:>9}{seq['tokens']:>9}{seq['seconds']:>10}{seq['tokens_per_s']:>11}")
    print(f"{'hf batched x' + str(args.hf_batch):<16}{batched['prompts']:>9}{batched['tokens']:>9}"
          f"{batched['seconds']:>10}{batched['tokens_per_s']:>11}")
    r = result["ratios"]
    print(f"\nvllm / hf sequential generate: {r['vllm_vs_hf_sequential']}x   (target >= 5x)")
    print(f"vllm / hf batched generate (batch {args.hf_batch}): {r['vllm_vs_hf_batched']}x")
    print(f"with the engine's seed instead of per-request seeds: {r['vllm_engine_seed_vs_hf_sequential']}x sequential, "
          f"{r['vllm_engine_seed_vs_hf_batched']}x batched")
    print(f"best runs instead of medians: {r['best_run_vllm_vs_hf_sequential']}x sequential, "
          f"{r['best_run_vllm_vs_hf_batched']}x batched")
    print(f"load average after the run: {result['load_average_after']} on {os.cpu_count()} CPUs")
    print(f"engine start: {vllm['engine_start_s']} s (not in the throughput)  ->  {out}")
    return result


if __name__ == "__main__":
    from bench.common import cli

    cli(main, __doc__, sequential_prompts={"help": "prompts for the one-at-a-time baseline"},
        dtype={"choices": ["float32", "bfloat16"]})
