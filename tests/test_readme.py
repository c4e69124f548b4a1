"""The README's figures are what the command prints: a fresh run of its main command (once per
test session, on the demo data, nothing reused) gives exactly the verdict section the README shows,
verdict line, ΔAUC and interval included. CPU runs are deterministic on one machine (PyTorch picks
CPU kernels by instruction set, so another machine gives other last bits and other numbers): the
README names the machine its excerpt came from, and the check runs where the machine is the same.
The README is rewritten by ``python benchmarks/readme.py`` after any change that moves a number or
a word."""

import argparse
import csv
import dataclasses
import importlib.util
import io
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "benchmarks" / "readme.py")
readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme)


@pytest.fixture(scope="session")
def main_run(tmp_path_factory):
    """The README's main command, fresh, in an empty reports folder: (run folder, wall seconds)."""
    return readme.fresh_run(tmp_path_factory.mktemp("readme_reports"))


def test_the_readme_excerpt_is_a_fresh_run_of_the_main_command(request, record_property):
    generated_on = readme.readme_machine(readme.README.read_text(encoding="utf-8"))
    assert generated_on, "the README does not say which machine its excerpt came from"
    if generated_on != readme.machine():
        pytest.skip(
            f"the README's numbers come from {generated_on}; this machine is {readme.machine()}, whose "
            "CPU kernels give other numbers: `python benchmarks/readme.py` here to check the words"
        )
    run_dir, seconds = request.getfixturevalue("main_run")
    record_property("main_command_seconds", round(seconds, 1))
    print(f"main command: {seconds:.1f} s")
    fresh = readme.excerpt(run_dir)
    shown = readme.readme_excerpt(readme.README.read_text(encoding="utf-8"))
    assert shown == fresh, (
        "the README's terminal excerpt is not what the main command prints now; rerun "
        "`python benchmarks/readme.py`:\n" + readme.difference(shown, fresh)
    )


def test_the_excerpt_check_can_fail():
    text = readme.README.read_text(encoding="utf-8")
    shown = readme.readme_excerpt(text)
    changed = readme.with_excerpt(text, shown.replace("0.", "9.", 1))
    assert readme.readme_excerpt(changed) != shown and readme.difference(
        shown, readme.readme_excerpt(changed)
    )
    rewritten = readme.with_excerpt(text, shown)
    assert readme.readme_excerpt(rewritten) == shown  # a rewrite round-trips
    assert readme.readme_machine(rewritten) == readme.machine()  # and records this machine, once
    assert readme.with_excerpt(rewritten, shown) == rewritten
    with pytest.raises(ValueError, match="markers"):
        readme.readme_excerpt(text.replace(readme.START, ""))


# The README as a newcomer reads it: its order, its paths, its sample ids, its links and its plugin
# contract are held to the code, so that a change to either shows here.

DOCS = ROOT / "docs"
NEWCOMER_ORDER = ("Set-up", "Main job", "Your own data", "Your own plugin", "Reading the verdict")


def _markdown_files() -> list[Path]:
    return [readme.README, *sorted(DOCS.glob("*.md"))]


def _without_code_blocks(text: str) -> str:
    """The text with every fenced block (```...```) blanked out, lines kept."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def _sections(text: str, level: str = "## ") -> dict[str, str]:
    """Heading -> its text up to the next heading of that level (code blocks do not hold headings)."""
    plain = _without_code_blocks(text).splitlines()
    raw = text.splitlines()
    starts = [i for i, line in enumerate(plain) if line.startswith(level)]
    return {
        plain[i][len(level) :].strip(): "\n".join(raw[i + 1 : end])
        for i, end in zip(starts, [*starts[1:], len(raw)])
    }


def _readme() -> str:
    return readme.README.read_text(encoding="utf-8")


def test_the_readme_leads_a_newcomer_from_set_up_to_the_verdict():
    headings = list(_sections(_readme()))
    missing = [name for name in NEWCOMER_ORDER if name not in headings]
    assert not missing, f"README.md lacks the section(s) {missing}; it has {headings}"
    positions = [headings.index(name) for name in NEWCOMER_ORDER]
    assert positions == sorted(positions), f"README.md's sections are in the order {headings}"
    assert headings[0] == NEWCOMER_ORDER[0], "set-up comes first"


def test_no_path_of_the_maintainers_machines_in_the_docs():
    """`../shared/` exists on the maintainers' machines only: a user has no such folder."""
    for path in _markdown_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert "../shared/" not in line, f"{path.name}:{number}: {line.strip()}"


def _id_table() -> dict[str, list[str]]:
    """The README's sample-id table: the first cell of each row -> the ids in its example cell."""
    lines = _readme().splitlines()
    header = "| data (`--data`) | sample id"
    starts = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert starts, f"README.md lacks its sample-id table (a row starting {header!r})"
    start = starts[0]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        rows[cells[0]] = re.findall(r"`([^`]+)`", cells[-1])
    return rows


def _write_images(root: Path, names) -> None:
    from PIL import Image

    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 10 * i, dtype=np.uint8)).save(root / name)


def test_the_readme_image_folder_ids_are_what_the_loader_gives(tmp_path):
    from cvkit.data import load_data

    shown = _id_table()["image folder"]
    assert "benign/img_0009.png" in shown  # the example the README's text and tree use
    _write_images(tmp_path / "images", shown)
    dataset = load_data(str(tmp_path / "images"))
    assert sorted(dataset.sample_ids.tolist()) == sorted(shown)


def test_the_readme_manifest_npz_and_demo_ids_are_what_the_loaders_give(tmp_path):
    from cvkit.data import load_manifest, load_medmnist, make_demo

    table = _id_table()
    with_id, without_id = table["CSV manifest"]
    _write_images(tmp_path, [without_id, "images/other.png"])
    (tmp_path / "plain.csv").write_text(f"image,label\n{without_id},benign\nimages/other.png,malignant\n")
    (tmp_path / "ids.csv").write_text(
        f"image,label,id\n{without_id},benign,{with_id}\nimages/other.png,malignant,other\n"
    )
    assert without_id in load_manifest(tmp_path / "plain.csv").sample_ids.tolist()
    assert with_id in load_manifest(tmp_path / "ids.csv").sample_ids.tolist()

    sizes = {"train": 546, "val": 78, "test": 156}  # BreastMNIST's parts
    arrays = {}
    for part, n in sizes.items():
        arrays[f"{part}_images"] = np.zeros((n, 2, 2), dtype=np.uint8)
        arrays[f"{part}_labels"] = (np.arange(n) % 2)[:, None]
    np.savez(tmp_path / "breastmnist.npz", **arrays)
    ids = load_medmnist(tmp_path / "breastmnist.npz").sample_ids.tolist()
    assert table["MedMNIST `.npz`"] and set(table["MedMNIST `.npz`"]) <= set(ids)

    assert table["`demo`"] and set(table["`demo`"]) <= set(make_demo().sample_ids.tolist())


def test_the_readme_extra_features_example_joins_an_image_folder_of_its_ids(tmp_path):
    """The README's --extra CSV, joined to an image folder holding the files its ids name: the ids
    it shows are the ones the folder's loader gives, so the join finds every row."""
    from cvkit.data import load_data, with_extra

    marker = "<!-- extra-features example:"
    text = _readme()
    assert marker in text, "README.md lacks its --extra example (marker " + marker + ")"
    block = text[text.index(marker) :].split("```csv\n", 1)[1].split("```", 1)[0]
    (tmp_path / "features.csv").write_text(block)
    rows = list(csv.DictReader(io.StringIO(block)))
    ids = [row["sample_id"] for row in rows]
    _write_images(tmp_path / "images", ids)
    dataset = load_data(str(tmp_path / "images"))
    assert sorted(dataset.sample_ids.tolist()) == sorted(ids)
    joined = with_extra(dataset, str(tmp_path / "features.csv"))
    names = [name for name in rows[0] if name != "sample_id"]
    assert joined.extra_names == tuple(names)
    for sample, values in zip(joined.sample_ids.tolist(), joined.extra):
        row = next(r for r in rows if r["sample_id"] == sample)
        expected = [float(row[name]) if row[name] else np.nan for name in names]
        assert np.allclose(values, expected, equal_nan=True)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    plain = _without_code_blocks(path.read_text(encoding="utf-8"))
    return {_slug(line.lstrip("#")) for line in plain.splitlines() if re.match(r"#{1,6} ", line)}


def _links(path: Path) -> list[str]:
    plain = re.sub(r"`[^`\n]*`", "", _without_code_blocks(path.read_text(encoding="utf-8")))
    return re.findall(r"\]\(([^)\s]+)\)", plain)


def test_every_relative_link_in_the_docs_leads_somewhere():
    broken = []
    for path in _markdown_files():
        for link in _links(path):
            if re.match(r"[a-z]+:", link):  # https:, mailto:
                continue
            target, _, anchor = link.partition("#")
            file = (path.parent / target).resolve() if target else path
            if not file.exists():
                broken.append(f"{path.name}: {link} (no {file})")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{path.name}: {link} (no heading #{anchor} in {file.name})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_readme_links_every_docs_page():
    linked = {(readme.README.parent / link.partition("#")[0]).resolve() for link in _links(readme.README)}
    pages = sorted(DOCS.glob("*.md"))
    assert {"speed.md", "scaling.md", "robustness.md", "plugins.md"} <= {page.name for page in pages}
    assert [page.name for page in pages if page.resolve() not in linked] == []


def test_the_readme_speed_section_is_a_short_pointer_to_docs_speed():
    speed = _sections(_readme())["Speed"].strip()
    lines = [line for line in speed.splitlines() if line.strip()]
    assert len(lines) <= 10, f"the README's Speed section has {len(lines)} lines; details go to docs/speed.md"
    assert "(docs/speed.md)" in speed


def _public_context_attributes() -> dict[str, str]:
    """Name -> annotation of what a plugin may read on a TrainContext: its fields and properties."""
    from cvkit.trainers import TrainContext

    found = {f.name: str(f.type) for f in dataclasses.fields(TrainContext)}
    for name, value in vars(TrainContext).items():
        if isinstance(value, property):
            found[name] = str(value.fget.__annotations__.get("return", ""))
    return {name: kind for name, kind in found.items() if not name.startswith("_")}


def test_the_readme_context_table_is_the_context_s_public_attributes():
    plugin = _sections(_readme())["Your own plugin"]
    header = "| attribute | type | meaning |"
    assert header in plugin, "the README's plugin section lacks the TrainContext table"
    table = plugin[plugin.index(header) :].split("\n\n")[0]
    rows = re.findall(r"^\| `(\w+)` \| `((?:[^`])+)` \|", table, flags=re.M)
    shown = {name: kind.replace("\\|", "|") for name, kind in rows}
    assert len(shown) == len(rows), "an attribute is listed twice"
    actual = _public_context_attributes()
    assert sorted(shown) == sorted(actual)
    for name, kind in shown.items():
        assert actual[name] == kind or actual[name].startswith(kind + "["), (name, kind, actual[name])
    assert "num_classes" not in shown


def test_the_readme_plugin_example_passes_the_pre_flight(tmp_path, tiny):
    """The README's example plugin, with and without extra features, as cvkit checks a plugin
    before any job: backbone's pair unpacked, two outputs, forward(x, extra) taking None."""
    from cvkit.trainers import TrainConfig, TrainContext, load_plugin, preflight

    code = re.search(r"```python\n(.*?)```", _sections(_readme())["Your own plugin"], flags=re.S)
    assert code, "the README's plugin section has no Python example"
    path = tmp_path / "readme_head.py"
    path.write_text(code.group(1))
    plugin = load_plugin(str(path))
    for data in (tiny, dataclasses.replace(tiny, extra=None, extra_names=())):
        context = TrainContext.for_data(
            data, TrainConfig(epochs=1), seed=0, device="cpu", hyperparams=plugin.hyperparams
        )
        preflight(plugin, context, data.subset([0, 1]))


# Flags of other programs the docs show: pip's, `ray start`'s, `mlflow ui`'s and pytest-xdist's (the
# test command).
OTHER_PROGRAMS_FLAGS = {"--index-url", "--head", "--port", "--backend-store-uri", "--maxprocesses", "--dist"}


def test_every_option_the_docs_name_exists():
    """A `--flag` in README.md or docs/ is one of cvkit's (any subcommand), of a benchmark script or
    of the other programs named above: a renamed or imagined option (`--backbone`) fails here."""
    from cvkit.cli import build_parser

    parser = build_parser()
    known = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                known |= set(sub._option_string_actions)
    for script in (ROOT / "benchmarks").glob("*.py"):
        known |= set(re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", script.read_text()))
    unknown = []
    for path in _markdown_files():
        for flag in sorted(set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", path.read_text(encoding="utf-8")))):
            if flag not in known | OTHER_PROGRAMS_FLAGS:
                unknown.append(f"{path.name}: {flag}")
    assert not unknown, "options no command has: " + ", ".join(unknown)
