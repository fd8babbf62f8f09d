"""%%finetune benchmarks: LoRA throughput vs a direct peft + trl script, and peak memory of full / LoRA / QLoRA.

    python benchmarks/bench_finetune.py [--steps 20] [--repeats 2] [--model tiny-base]

1. LoRA tokens/s: the same model, data, batch, steps and learning rate, trained (a) by ``%%finetune`` through an
   IPython shell (which also copies the model, converts the data, checkpoints, saves the adapter and a merged
   model, and writes a card) and (b) by a plain script: ``SFTTrainer(model, args=SFTConfig(...),
   peft_config=LoraConfig(...)).train()``. Runs are interleaved (a, b, a, b) and the best of each is kept, so
   load from other processes hurts both alike. Target: overhead <= 10 %.
   Precision is the same on both sides: trl's configs default to ``bf16=True`` (bfloat16 autocast, on CPUs that
   support it), ``%%finetune`` to fp32 (``--bf16`` to opt in). ``--precision auto`` (default) leaves the direct
   script on trl's default and gives the magic the same (``--bf16`` when trl resolved to bf16);
   ``--precision fp32``/``bf16`` sets both. Comparing a bf16 script with an fp32 cell measures the precision,
   not the cell: that was the whole of the "+20 %" once reported here.
2. Peak memory: each method trains in a fresh subprocess; the figure is the peak RSS of the process minus its RSS
   after loading the model (what training adds), plus the bytes held by the weights (fp32 vs 4-bit NF4).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def data_rows(n=96):
    from labkit.zoo.corpus import Corpus

    return [{"messages": m} for m in Corpus(0).chat_examples("train", n, mix={"instruction": 1.0})]


def model_and_tok(name):
    from labkit.finetune import toy

    m, tok, found = toy.zoo_or_toy([name]) if name != "toy" else (*toy.model("tiny"), None)
    return m, tok, found or "toy tiny (random init)"


def run_magic(shell, steps, batch, save_every, bf16=False):
    t0 = time.perf_counter()
    r = shell.run_line_magic("finetune", f"--model BENCH --method lora --rank 8 --data rows --steps {steps} "
                                         f"--batch {batch} --lr 2e-3 --max-length 128 --quiet --save-every {save_every}"
                                         f" --out bench_run" + (" --bf16" if bf16 else ""))  # --data: the line form
    wall = time.perf_counter() - t0
    return wall, r.seconds, r.tokens


def direct_config(outdir, steps, batch, precision="auto"):
    """The direct script's SFTConfig: trl's defaults, but for what both sides set alike."""
    from trl import SFTConfig

    extra = {} if precision == "auto" else {"bf16": precision == "bf16"}
    return SFTConfig(output_dir=outdir, max_steps=steps, per_device_train_batch_size=batch, learning_rate=2e-3,
                     max_length=128, logging_steps=1, report_to=[], save_strategy="no", use_cpu=True,
                     disable_tqdm=True, gradient_checkpointing=False, dataset_num_proc=None, seed=0, **extra)


def run_direct(model, tok, rows, steps, batch, outdir, precision="auto"):
    import copy

    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTTrainer

    from labkit.finetune.data import load_data

    t0 = time.perf_counter()
    ds = Dataset.from_list(load_data(rows, "lora").rows)  # the same converted rows
    fresh, args = copy.deepcopy(model), direct_config(outdir, steps, batch, precision)
    t1 = time.perf_counter()  # train s: trainer construction (tokenization, peft wrap) + train(), as %%finetune's
    trainer = SFTTrainer(
        model=fresh, processing_class=tok, train_dataset=ds, args=args,
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainer.train()
    t2 = time.perf_counter()
    tokens = max(float(l.get("num_tokens", 0)) for l in trainer.state.log_history)
    return t2 - t0, t2 - t1, tokens


def throughput(args):
    import warnings

    warnings.filterwarnings("ignore")
    from IPython.core.interactiveshell import InteractiveShell

    import labkit  # noqa: F401
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils import logging as hf_logging

    disable_progress_bar()
    hf_logging.set_verbosity_error()
    model, tok, label = model_and_tok(args.model)
    rows = data_rows()
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "labkit")
    shell.user_ns.update(BENCH=(model, tok), rows=rows)
    out = {"magic": [], "magic_nockpt": [], "direct": []}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LABKIT_HOME"] = tmp
        bf16 = bool(direct_config(os.path.join(tmp, "direct"), args.steps, args.batch, args.precision).bf16)
        for _ in range(args.repeats):
            out["direct"].append(run_direct(model, tok, rows, args.steps, args.batch, os.path.join(tmp, "direct"),
                                            args.precision))
            out["magic"].append(run_magic(shell, args.steps, args.batch, max(1, args.steps // 4), bf16))
            out["magic_nockpt"].append(run_magic(shell, args.steps, args.batch, 0, bf16))
    best = {k: min(v, key=lambda t: t[0]) for k, v in out.items()}
    d_wall, d_train, d_tok = best["direct"]
    print(f"\nLoRA (rank 8, all linear layers) on {label}: {args.steps} steps, batch {args.batch}, "
          f"best of {args.repeats} interleaved runs, {'bf16 autocast' if bf16 else 'fp32'} on both sides "
          f"(--precision {args.precision})")
    print(f"{'run':<44} {'wall s':>7} {'train s':>8} {'tokens':>7} {'tok/s (wall)':>13} {'overhead':>9}")
    print(f"{'direct peft + trl script':<44} {d_wall:7.2f} {d_train:8.2f} {d_tok:7.0f} {d_tok / d_wall:13.0f} {'-':>9}")
    for key, name in (("magic", "%%finetune (default: 4 checkpoints + saves)"),
                      ("magic_nockpt", "%%finetune --save-every 0")):
        wall, train_s, tokens = best[key]
        print(f"{name:<44} {wall:7.2f} {train_s:8.2f} {tokens:7.0f} {tokens / wall:13.0f} "
              f"{100 * (wall / d_wall - 1):8.1f}%")
    print("overhead = wall time of the whole cell / wall time of the direct script - 1 (target <= 10 %); "
          "train s = trainer construction + train(), on both sides")


CHILD = r"""
import json, os, resource, sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, {here!r})
from bench_finetune import data_rows, model_and_tok
from labkit.runtime import process_rss
from labkit.finetune import finetune
from labkit.finetune.quant import weight_bytes, load_quantized
method, name, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
model, tok, label = model_and_tok(name)
rows = data_rows()
if method == "qlora":
    import tempfile
    folder = tempfile.mkdtemp(); model.save_pretrained(folder); tok.save_pretrained(folder)
    wb = weight_bytes(load_quantized(folder))
    model = folder
else:
    wb = weight_bytes(model)
base = process_rss()
r = finetune(model if method == "qlora" else (model, tok), rows, method, steps=steps, batch=8, max_length=128,
             save_every=0, show=False, name="mem-" + method)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(dict(method=method, label=label, weights=wb, added=peak - base, peak=peak,
                      trainable=r.trainable_params, total=r.total_params, tps=r.tokens_per_s)))
"""


def memory(args):
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "child.py")
        with open(script, "w") as fh:
            fh.write(CHILD.format(here=HERE))
        env = dict(os.environ, LABKIT_HOME=tmp)
        for method in ("full", "lora", "qlora"):
            out = subprocess.run([sys.executable, script, method, args.model, str(args.mem_steps)],
                                 capture_output=True, text=True, env=env)
            line = [l for l in out.stdout.splitlines() if l.startswith("{")]
            if not line:
                print(f"{method}: failed\n{out.stderr[-2000:]}")
                continue
            results.append(json.loads(line[-1]))
    if not results:
        return
    mb = 2**20
    full = next((r for r in results if r["method"] == "full"), results[0])
    print(f"\nPeak memory on {results[0]['label']} ({args.mem_steps} steps, batch 8, fresh process each)")
    print(f"{'method':<7} {'weights MB':>10} {'trainable':>10} {'added by training MB':>21} {'peak RSS MB':>12} "
          f"{'vs full':>8}")
    for r in results:
        print(f"{r['method']:<7} {r['weights'] / mb:10.1f} {r['trainable']:>10,} {r['added'] / mb:21.1f} "
              f"{r['peak'] / mb:12.1f} {r['added'] / max(1, full['added']):8.2f}")
    print("added by training = peak RSS - RSS once the model is loaded (gradients, optimizer state, activations, "
          "the trainer); QLoRA's weights are its 4-bit NF4 base.")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-base", help="zoo name, or 'toy' for a random tiny model")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--mem-steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="auto: trl's default for the direct script (bf16 where supported), the same for the magic")
    ap.add_argument("--only", choices=["throughput", "memory"])
    args = ap.parse_args(argv)
    if args.only != "memory":
        throughput(args)
    if args.only != "throughput":
        memory(args)


if __name__ == "__main__":
    main()
