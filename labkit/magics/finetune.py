"""``%%finetune``: train a model on the cell's data (or --data), live, over ``labkit.finetune``."""
from __future__ import annotations

from ._base import Magic, MagicParser
from ..errors import LabkitUsageError

parser = MagicParser(
    "%%finetune",
    description="Fine-tune a model on the data in the cell (or --data): full, LoRA, QLoRA, DPO, GRPO or a reward model.",
    epilog="""The cell body holds the data: JSON lines (Alpaca, ShareGPT, ChatML messages, prompt/completion,
prompt/chosen/rejected, prompt/answer) or plain text. The result is saved and registered under --out NAME,
so `%%generate --model NAME` can use it at once.

examples:
  %%finetune --model tiny-chat --method lora --rank 8 --steps 40 --out my_lora
  {"instruction": "Say hi", "output": "Hello!"}

  %%finetune --model tiny-chat --method dpo --data prefs --steps 30 --out aligned
  %%finetune --model tiny-chat --method grpo --reward arithmetic --data problems --steps 20 --out solver
  %%finetune --model tiny-chat --method lora --out my_lora --resume      (continue after a restart)
  %%finetune --model tiny-chat --data rows --steps 12 --out r1 --track lab22   (logged to MLflow)""",
)
parser.add_argument("--model", default="tiny-base", help="model to train: tiny-base, tiny-chat, a run name, a folder, a hub id, or a variable holding "
                         "(model, tokenizer) or a loaded model")
parser.add_argument("--method", default="lora", help="full, lora, qlora, dpo, grpo or reward (default lora)")
parser.add_argument("--data", metavar="VAR|PATH", help="a variable (list of dicts, Dataset, text) or a .jsonl/.json/.txt file")
parser.add_argument("--rank", type=int, default=8, help="LoRA rank (default 8)")
parser.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default 2 x rank)")
parser.add_argument("--targets", help="LoRA target modules, comma-separated (default: all linear layers)")
parser.add_argument("--lora", action="store_true", help="train dpo/grpo/reward through LoRA adapters")
parser.add_argument("--steps", type=int, help="optimizer steps")
parser.add_argument("--epochs", type=float, help="passes over the data (default 1 when --steps is not given)")
parser.add_argument("--lr", type=float, help="learning rate (default depends on the method)")
parser.add_argument("--batch", type=int, default=8, help="examples per step (default 8)")
parser.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (default 1)")
parser.add_argument("--max-length", type=int, default=256, help="tokens per example, longer ones are cut (default 256)")
parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
parser.add_argument("--resume", action="store_true", help="continue the run --out NAME from its last checkpoint")
parser.add_argument("--skip-bad", action="store_true", help="skip malformed data lines instead of stopping")
parser.add_argument("--format", dest="data_format", help="force the data format (alpaca, sharegpt, chatml, ...)")
parser.add_argument("--merge", action="store_true", help="fold the LoRA adapters into the base weights")
parser.add_argument("--save-every", type=int, help="checkpoint every N steps (default: 4 per run; 0 = only at a stop)")
parser.add_argument("--beta", type=float, default=0.1, help="DPO beta (default 0.1)")
parser.add_argument("--reward", default="arithmetic", help="GRPO reward: arithmetic, exact, brevity or a function variable")
parser.add_argument("--generations", type=int, default=4, help="GRPO replies per prompt (default 4)")
parser.add_argument("--max-new-tokens", type=int, default=16, help="GRPO reply length (default 16)")
parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
parser.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations to save memory")
parser.add_argument("--no-overlay", action="store_true", help="do not draw earlier runs in the view")
parser.add_argument("--quiet", action="store_true", help="no live view (the result still shows at the end)")
parser.add_argument("--track", metavar="EXPERIMENT", help="log the run to MLflow under this experiment: params, metrics "
                         "per step, artifacts (the tracking store is MLflow's current one: mlflow.set_tracking_uri(...) "
                         "or MLFLOW_TRACKING_URI)")


def _lookup(shell, expr: str):
    ns = shell.user_ns if shell is not None else {}
    if expr in ns:
        return ns[expr]
    return None


def run(args, body, shell):
    from ..finetune import FinetuneConfig, finetune

    data = None
    if args.data:
        value = _lookup(shell, args.data)
        data = value if value is not None else args.data
        if body and body.strip():
            raise LabkitUsageError("give the data either in the cell body or with --data, not both")
    elif body and body.strip():
        data = body
    elif not args.resume:
        raise LabkitUsageError("%%finetune needs training data: JSON lines or text in the cell body, under the "
                               "magic line, or --data VAR|PATH. See `%%finetune --help`.")
    model = args.model
    value = _lookup(shell, model)
    if value is not None:  # a variable: a model name, (model, tokenizer) or a loaded model
        model = value
    reward = args.reward
    if reward not in ("arithmetic", "exact", "brevity"):
        fn = _lookup(shell, reward)
        if not callable(fn):
            raise LabkitUsageError(f"--reward {reward!r}: use arithmetic, exact, brevity or the name of a function "
                                   f"f(completions, **columns) -> list of floats defined in the notebook")
        reward = fn
    config = FinetuneConfig.from_args(args, reward=reward)  # checked here, before the view or a model loads
    view = stop = None
    if not args.quiet and getattr(shell, "kernel", None) is not None:  # a notebook: the live training view
        from ..finetune import SESSION_CURVES, StopSignal
        from ..widgets import attach
        from ..widgets.training import LiveView

        stop = StopSignal()
        earlier = [c for c in SESSION_CURVES if c.name != args.out][-5:] if config.overlay else []
        view = LiveView(earlier, stop).display()
    callbacks = None
    if args.track:
        from ..finetune.tracking import MlflowTracking

        callbacks = [MlflowTracking(args.track)]
    result = finetune(model, data, config=config, stop=stop, on_progress=view, callbacks=callbacks)
    if view is not None:
        attach(result, view.widget, live=True)
    return result


MAGICS = [Magic("finetune", "cell", parser, run, flags={"num_generations": "--generations", "name": "--out",
                                                        "experiment": "--track"})]
