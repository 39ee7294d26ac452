"""The README's commands (and those of checkpoints/README.md and the pages under docs/): every `python <script> ...`
line in their code blocks names a script that exists and whose flags parse, as written (placeholders such as
`<run_name>` are just strings to the parser), every Python example without a placeholder runs as written, every link
to a local file or heading leads somewhere, and the README's map of the files names every module."""

import collections
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
    "checkpoints/training/README.md",
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
    return parse_with(load_script(script), argv)


def parse_with(module, argv: list):
    """Parse argv with the parser of a script's module (its `Args` dataclass, or the sweep's subcommands)."""
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


def without_code_blocks(text: str) -> str:
    """Markdown text without its fenced code blocks (where `#` starts a comment, not a heading)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def heading_anchors(path: str) -> set:
    """The anchors GitHub gives a Markdown file's headings: lower case, every character but letters, digits, `_`, `-`
    and spaces dropped, spaces turned into `-`; the n-th repeat of a heading gets `-n`."""
    seen, anchors = collections.Counter(), set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", without_code_blocks(open(path).read()), flags=re.M):
        anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(f"{anchor}-{seen[anchor]}" if seen[anchor] else anchor)
        seen[anchor] += 1
    return anchors


def local_links(doc: str) -> list:
    """(target path, anchor) of every link and image of a Markdown file that is not a web address."""
    text = re.sub(r"`[^`\n]*`", "", without_code_blocks(open(os.path.join(ROOT, doc)).read()))  # code is not a link
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    links = []
    for target in targets:
        if not re.match(r"[a-z]+:", target):  # https:, mailto:
            path, _, anchor = target.partition("#")
            links.append(
                (os.path.normpath(os.path.join(ROOT, os.path.dirname(doc), path or os.path.basename(doc))), anchor)
            )
    return links


def test_heading_anchors_are_githubs():
    """Hand-made anchors of headings as GitHub writes them (backticks, dots, apostrophes, colons and ± dropped)."""
    anchors = heading_anchors(os.path.join(ROOT, "docs", "saliency.md"))
    assert "saliency-maps-saliencypy" in anchors and "the-attention-itself" in anchors
    assert "the-games-objects-from-the-emulators-ram" in heading_anchors(os.path.join(ROOT, "docs", "play.md"))


@pytest.mark.parametrize("doc", DOCS)
def test_every_local_link_and_anchor_resolves(doc):
    """A link to a file of the repository names a file that exists; a link to a heading (`page.md#anchor`, `#anchor`)
    names a heading of that page."""
    links = local_links(doc)
    assert links  # every page links somewhere: the test reads them
    broken = [
        f"{os.path.relpath(path, ROOT)}#{anchor}" if anchor else os.path.relpath(path, ROOT)
        for path, anchor in links
        if not os.path.exists(path) or (anchor and (not path.endswith(".md") or anchor not in heading_anchors(path)))
    ]
    assert not broken, f"{doc}: links that lead nowhere: {broken}"


def test_the_readmes_map_of_the_files_names_every_module():
    """Every module of the project (a .py file at the top level) is in the README's "How the files fit" map."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme[readme.index("## How the files fit") :].split("\n## ")[0]
    modules = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "*.py"))}
    assert modules and not modules - set(re.findall(r"\w+\.py", section)), modules - set(
        re.findall(r"\w+\.py", section)
    )


SCRIPTS_WITH_FLAGS = ["ppo_attention.py", "render.py", "saliency.py", "relevance_tree.py", "explore.py"]
SCRIPTS_WITH_FLAGS += ["faithfulness.py", "interventions.py", "experiments/sweep.py run", "experiments/sweep.py slurm"]
SCRIPTS_WITH_FLAGS += ["experiments/sweep.py plot"]


@pytest.mark.parametrize("command", SCRIPTS_WITH_FLAGS)
def test_help_names_each_default_once(command, monkeypatch):
    """A flag whose help says its default in words (`SAYS_ITS_DEFAULT`) gets no second "(default: None)" from tyro."""
    script, *subcommand = command.split()
    monkeypatch.syspath_prepend(os.path.join(ROOT, os.path.dirname(script)))
    module = importlib.import_module(os.path.basename(script)[:-3])  # imported: tyro reads the docstrings' source
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), pytest.raises(SystemExit):
        parse_with(module, [*subcommand, "--help"])
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", stdout.getvalue()).split())
    assert "(default:" in text
    assert not re.search(r"\(default: [^)]*\) \(default:", text), re.search(r".{80}\) \(default:.{20}", text)
