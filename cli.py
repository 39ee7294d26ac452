"""The command-line conventions every script shares, the trainer included.

- `UsageError`: bad input from the user (a flag, a game id, a file). Its message is one sentence; `exit_on_bad_input`
  prints it without a traceback and exits 1. Any other exception is a bug and keeps its traceback.
- `StopRequest`: Ctrl-C (or SIGTERM, a scheduler's stop) asks the work in hand to finish and save, then stop.
- `read_checkpoint`: a `run.pt` of ppo_attention.py (or its run folder) loaded with `weights_only=True`, so that a
  shared file cannot run code, or one sentence saying what is wrong with it.
- Output: `pick_device`, `output_folder` (a new `runs/<run_name>/<kind>__<time>/` or `--out`, never overwriting
  files), `Progress` on stderr.
- `SAYS_ITS_DEFAULT`: marks a flag whose help text names its default in words, so that tyro does not add its own
  "(default: None)" after it.

It imports nothing of the project: the trainer and every explanation script import it (see README, "How the files fit").
"""

import contextlib
import os
import signal
import sys
import time
from typing import Optional

import torch
import tyro

CHECKPOINT_VERSION = 1  # the format of ppo_attention.py's run.pt: see its save_checkpoint
AGENT_FILES = (".pt", ".zip", ".cleanrl_model")  # this project's, SB3's and CleanRL's agent files
SAYS_ITS_DEFAULT = tyro.conf.arg(help_behavior_hint="")  # `flag: Annotated[type, SAYS_ITS_DEFAULT] = None`


class UsageError(ValueError):
    """Bad input from the user (a flag, a game id, a file): its message is one sentence, shown without a traceback."""


class StopRequest:
    """`with StopRequest(message) as stop:` Ctrl-C (or SIGTERM, a scheduler's stop) sets `stop.requested`: the loop
    finishes the work in hand, saves, stops; each press prints `message`. Leaving the block puts back the handlers
    that were there before, so Ctrl-C interrupts again (in a notebook, or a test that calls train())."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, message: str):
        self.requested, self.message, self.previous = False, message, {}

    def __enter__(self):
        self.previous = {sig: signal.signal(sig, self.handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self.previous.items():  # None: a handler not installed from Python, put back as the default
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def handle(self, signum, frame):
        self.requested = True
        print(f"\nCtrl-C: {self.message}", file=sys.stderr, flush=True)


def read_checkpoint(path: str) -> dict:
    """The dict of a checkpoint file or run folder, loaded with weights_only (no pickled code runs), or UsageError."""
    check_run_folder(path)
    path = os.path.join(path, "run.pt") if os.path.isdir(path) else path
    if not os.path.isfile(path):
        raise UsageError(f"checkpoint '{path}' does not exist.")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # "Unsupported global": a class or function in the file, which could run code
        why = "holds pickled Python objects, which could run code" if "Unsupported global" in str(e) else "is corrupt"
        raise UsageError(f"'{path}' {why}: it is not a readable checkpoint.") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or ckpt.get("format_version") != CHECKPOINT_VERSION:
        raise UsageError(f"'{path}' is not a checkpoint written by ppo_attention.py (format {CHECKPOINT_VERSION}).")
    return {**ckpt, "path": path}


def check_run_folder(path: str) -> None:
    """A folder loads as a run folder (its run.pt); for one without, UsageError naming the agent files it holds."""
    if not os.path.isdir(path) or os.path.isfile(os.path.join(path, "run.pt")):
        return
    files = sorted(f for f in os.listdir(path) if f.endswith(AGENT_FILES) and os.path.isfile(os.path.join(path, f)))
    shown, more = ", ".join(os.path.join(path, f) for f in files[:6]), len(files) - 6
    shown += f" and {more} more" if more > 0 else ""
    choose = f"give one of its files: {shown}" if files else "it holds no .pt, .zip or .cleanrl_model file either"
    raise UsageError(f"'{path}' is a folder without a run.pt (a run folder of ppo_attention.py); {choose}.")


def pick_device(cuda: bool, threads: int = 0) -> torch.device:
    """The GPU if `cuda` and there is one, else the CPU, with `threads` torch threads there (0: torch's default)."""
    device = torch.device("cuda" if cuda and torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and threads > 0:
        torch.set_num_threads(threads)
    return device


def make_writable_folder(path: str, what: str = "output folder") -> None:
    """Create `path` if needed and check that a file can be written there (UsageError if not)."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_test{os.getpid()}")
        open(probe, "w").close()
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"cannot write the {what} '{path}': {e.strerror}.") from None


@contextlib.contextmanager
def output_folder(out: Optional[str], run_name: str, kind: str, force: bool = False):
    """The folder an explanation script writes into: `--out`, or a new `runs/<run_name>/<kind>__<unix time>/`.

    An `--out` that already holds files is refused unless `force`. A folder made here and left empty (bad
    input, Ctrl-C before the first file) is removed again.
    """
    if out is None:
        base = os.path.join("runs", run_name.replace("/", "-"), f"{kind}__{int(time.time())}")
        out, n = base, 1
        while os.path.exists(out):
            n += 1
            out = f"{base}-{n}"
    elif os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out '{out}' is a file, not a folder.")
    elif os.path.isdir(out) and os.listdir(out) and not force:
        raise UsageError(f"--out '{out}' already holds files; choose another folder or add --force to write into it.")
    created = not os.path.exists(out)
    make_writable_folder(out)
    try:
        yield out
    finally:
        if created and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)


class Progress:
    """Progress on stderr: on a terminal one line rewritten in place, in a log a plain line every `every` seconds."""

    def __init__(self, every: float = 30.0):
        self.tty, self.every, self.last = sys.stderr.isatty(), every, -float("inf")

    def __call__(self, message: str, done: bool = False) -> None:
        now = time.monotonic()
        if done or now - self.last >= (0.1 if self.tty else self.every):
            self.last = now
            end = "\n" if done or not self.tty else ""
            print(f"\r{message}\033[K" if self.tty else message, end=end, file=sys.stderr, flush=True)


def exit_on_bad_input(main, argv=None):
    """Run a script's `main(argv)`: a UsageError ends with one sentence on stderr and exit 1, Ctrl-C with exit 130 and
    "stopped by Ctrl-C." (with what the script says of it: `KeyboardInterrupt("what was kept")`). Any other exception
    is a bug and keeps its traceback."""
    try:
        return main(argv)
    except UsageError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt as e:
        print(f"\nstopped by Ctrl-C{f': {e}' if str(e) else ''}.", file=sys.stderr)
        sys.exit(130)
