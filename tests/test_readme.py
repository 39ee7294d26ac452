"""The README's commands (and those of checkpoints/README.md and the pages under docs/): every `python <script> ...`
line in their code blocks names a script that exists and whose flags parse, as written (placeholders such as
`<run_name>` are just strings to the parser), and every Python example without a placeholder runs as written."""

import contextlib
import dataclasses
import glob
import importlib.util
import io
import os
import re
import shlex

import pytest
import tyro
from conftest import ROOT

DOCS = [
    "README.md",
    "checkpoints/README.md",
    *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))),
]


def code_blocks(path: str) -> list:
    """(language, text) of every fenced code block of a Markdown file."""
    text = open(os.path.join(ROOT, path)).read()
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def command_lines() -> list:
    """(document, argv) of every line of a plain code block that runs a Python script of the project."""
    found = []
    for doc in DOCS:
        for language, block in code_blocks(doc):
            for line in block.splitlines() if language == "" else []:
                argv = shlex.split(line, comments=True)
                if len(argv) >= 2 and argv[0] == "python" and argv[1].endswith(".py"):
                    found.append((doc, argv[1:]))
    return found


def load_script(path: str):
    """A script of the project as a module, without running its `__main__` block."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(script: str, argv: list):
    """Parse argv with the script's own parser; tyro exits with code 2 (and a message) when a flag is unknown."""
    module = load_script(script)
    if hasattr(module, "parse_command"):  # experiments/sweep.py: subcommands
        return module.parse_command(argv)
    (config,) = [v for k, v in vars(module).items() if k.endswith("Args") and dataclasses.is_dataclass(v)]
    return tyro.cli(config, args=argv)


COMMANDS = command_lines()


def test_the_readmes_show_every_script():
    scripts = {argv[0] for _, argv in COMMANDS}
    assert {
        "ppo_attention.py",
        "render.py",
        "saliency.py",
        "relevance_tree.py",
        "faithfulness.py",
        "interventions.py",
    } <= scripts
    assert "experiments/sweep.py" in scripts and len(COMMANDS) >= 20


@pytest.mark.parametrize("doc, argv", COMMANDS, ids=[" ".join(argv)[:70] for _, argv in COMMANDS])
def test_each_command_names_a_script_and_its_flags_parse(doc, argv):
    assert os.path.isfile(os.path.join(ROOT, argv[0])), f"{doc}: no script {argv[0]}"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parse(argv[0], argv[1:])
    except SystemExit as e:
        pytest.fail(f"{doc}: `python {shlex.join(argv)}` does not parse (exit {e.code}): {stderr.getvalue()[-600:]}")


def test_every_output_of_a_readme_command_lands_under_runs():
    """The outputs of the explanation scripts go to runs/ (the default --out): a --json file of a command that a
    newcomer copies must not land in the repository's root."""
    outputs = [argv[argv.index(flag) + 1] for _, argv in COMMANDS for flag in ("--json", "--out") if flag in argv]
    assert outputs and all(path.startswith("runs/") for path in outputs), outputs


def test_the_python_examples_run_as_written(capsys, monkeypatch):
    """Examples with a placeholder such as `runs/<run_name>/run.pt` need the reader's own run: they are left out."""
    monkeypatch.chdir(ROOT)
    examples = [block for doc in DOCS for language, block in code_blocks(doc) if language == "python"]
    examples = [block for block in examples if not re.search(r"<\w+>", block)]
    assert examples
    for example in examples:
        exec(compile(example, "README example", "exec"), {"__name__": "readme_example"})
    assert capsys.readouterr().out  # they print what they show
