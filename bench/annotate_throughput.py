"""Throughput of the vllm backend against plain transformers ``generate``, side by side in one run.

The same tiny random LLaMA (hidden 128, 2 heads of 64, 2 layers; built here, nothing is
downloaded), the same chat-rendered prompts, the same sampling (temperature 0.6, top_p 0.8) and
the same output length (every answer exactly ``--tokens`` tokens: ``ignore_eos`` in vLLM,
``min_new_tokens`` in transformers), the same dtype. Three contenders:

* ``vllm``: the project's vllm backend (``VLLMAnnotator._generate``: one ``LLM.chat`` call for
  the whole batch, per-request seeds), engine in-process as on CPU workers;
* ``hf_sequential``: ``model.generate`` one prompt at a time (how a naive captioning loop runs);
* ``hf_batched``: ``model.generate`` on left-padded batches of ``--hf-batch`` prompts.

Generated tokens per second are the median of ``--repeats`` timed runs after a warm-up; ratios
are printed against both transformers baselines. On CPU with a tiny model batching matters more
than the engine, so the batched ratio is the honest one to quote. Results go to
``bench-results/annotate.json``.

    python bench/annotate_throughput.py [--prompts 256] [--tokens 64] [--hf-batch 64]
"""

from __future__ import annotations

import argparse
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


def prompts(n: int) -> list[str]:
    return [f"Describe music for {TOPICS[i % len(TOPICS)]}, variation {i}, with instruments, tempo and mood."
            for i in range(n)]


def bench_vllm(model_dir: str, texts: list[str], tokens: int, dtype: str, repeats: int) -> dict:
    from annotators.base import Request
    from annotators.requests import build_annotator
    from annotators.vllm_backend import VLLMAnnotator

    ann = build_annotator(VLLMAnnotator, "text", model_dir, batch_size=len(texts),
                          options={"engine": {"max_model_len": 1024, "dtype": dtype}, "prompts": {"response": "music_question"}},
                          generation={"max_tokens": tokens})
    t0 = time.perf_counter()
    ann.setup()
    start_s = time.perf_counter() - t0
    chats = []
    for i, text in enumerate(texts):
        c = ann.builder.build(Request(f"bench-{i}", "response", context={"instruction": "x", "music_caption": "x"}))
        c.messages = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        c.params = {**c.params, "ignore_eos": True}
        chats.append(c)
    ann._generate(chats[:8])  # warm-up
    times, produced = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        outs = ann._generate(chats)
        times.append(time.perf_counter() - t)
        assert all(o.text is not None for o in outs)
    # count the tokens actually produced (ignore_eos makes it prompts x tokens)
    from vllm import SamplingParams  # noqa: F401  (the engine is loaded: count with its tokenizer)

    tok = ann.llm.get_tokenizer()
    produced = sum(len(tok.encode(o.text, add_special_tokens=False)) for o in outs)
    ann.teardown()
    med = statistics.median(times)
    return {"engine_start_s": round(start_s, 2), "seconds": round(med, 3), "tokens": len(texts) * tokens,
            "tokens_retokenized": produced, "tokens_per_s": round(len(texts) * tokens / med, 1),
            "runs_s": [round(t, 3) for t in times]}


def bench_hf(model_dir: str, texts: list[str], tokens: int, dtype: str, batch: int, repeats: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
    rendered = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
                for t in texts]
    kw = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True, temperature=0.6, top_p=0.8,
              pad_token_id=tok.pad_token_id)

    def run(chunk):
        enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, **kw)
        return int((out.shape[1] - enc["input_ids"].shape[1]) * out.shape[0])

    torch.manual_seed(0)
    run(rendered[:2])  # warm-up
    times, produced = [], 0
    for _ in range(repeats):
        t = time.perf_counter()
        produced = sum(run(rendered[i:i + batch]) for i in range(0, len(rendered), batch))
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"batch": batch, "prompts": len(texts), "seconds": round(med, 3), "tokens": produced,
            "tokens_per_s": round(produced / med, 1), "runs_s": [round(t, 3) for t in times]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--hf-batch", type=int, default=64)
    ap.add_argument("--sequential-prompts", type=int, default=32, help="prompts for the one-at-a-time baseline")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(REPO / "bench-results" / "annotate.json"))
    args = ap.parse_args()

    from tests.annotators.tiny_models import tiny_llama

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = str(tiny_llama(Path(tmp) / "tiny-llama"))
        texts = prompts(args.prompts)
        vllm = bench_vllm(model_dir, texts, args.tokens, args.dtype, args.repeats)
        seq = bench_hf(model_dir, texts[:args.sequential_prompts], args.tokens, args.dtype, 1, max(1, args.repeats - 2))
        batched = bench_hf(model_dir, texts, args.tokens, args.dtype, args.hf_batch, args.repeats)

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
        "vllm": vllm, "hf_sequential": seq, "hf_batched": batched,
        "ratios": {"vllm_vs_hf_sequential": round(vllm["tokens_per_s"] / seq["tokens_per_s"], 2),
                   "vllm_vs_hf_batched": round(vllm["tokens_per_s"] / batched["tokens_per_s"], 2)},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'contender':<16}{'prompts':>9}{'tokens':>9}{'seconds':>10}{'tokens/s':>11}")
    print(f"{'vllm':<16}{args.prompts:>9}{vllm['tokens']:>9}{vllm['seconds']:>10}{vllm['tokens_per_s']:>11}")
    print(f"{'hf sequential':<16}{seq['prompts']:>9}{seq['tokens']:>9}{seq['seconds']:>10}{seq['tokens_per_s']:>11}")
    print(f"{'hf batched x' + str(args.hf_batch):<16}{batched['prompts']:>9}{batched['tokens']:>9}"
          f"{batched['seconds']:>10}{batched['tokens_per_s']:>11}")
    r = result["ratios"]
    print(f"\nvllm / hf sequential generate: {r['vllm_vs_hf_sequential']}x   (target >= 5x)")
    print(f"vllm / hf batched generate (batch {args.hf_batch}): {r['vllm_vs_hf_batched']}x")
    print(f"engine start: {vllm['engine_start_s']} s (not in the throughput)  ->  {out}")


if __name__ == "__main__":
    main()
