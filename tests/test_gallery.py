"""The case gallery (issue 19, item 4): the test images on which a variant and the baseline
disagree most often and those each model gets wrong most confidently, with their thumbnails kept
in the run folder; the lists against hand-made predictions of known truth, the documents on a tiny
run whose sample ids are hostile HTML, Markdown and mathtext."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import cvkit
from cvkit import escape
from cvkit.clinical import case_gallery
from cvkit.data import THUMBNAILS_NAME, Dataset, make_demo, make_thumbnails, read_thumbnails, write_thumbnails
from cvkit.report import write_json, write_reports

# -- the lists, on hand-made predictions ------------------------------------------------------

JOBS = [(0, 0), (0, 1), (1, 0), (1, 1)]  # (repeat, seed_index): 2 repeats x 2 seeds


def _frame(samples, class_names=("neg", "pos")):
    """Predictions of every model on every sample in every job: ``samples`` maps a sample id to
    (true class index, {model: [per-job probability rows]}), a row a probability of each class (or,
    with two classes, of ``pos`` alone)."""
    rows = []
    for idx, (sample_id, (label, by_model)) in enumerate(samples.items()):
        for model, per_job in by_model.items():
            for (repeat, seed_index), p in zip(JOBS, per_job):
                probs = [1 - p, p] if np.ndim(p) == 0 else list(p)
                rows.append(
                    dict(
                        model=model,
                        repeat=repeat,
                        fold=0,
                        seed_index=seed_index,
                        sample_idx=idx,
                        sample_id=sample_id,
                        label_index=label,
                        **{f"prob_{c}": q for c, q in zip(class_names, probs)},
                    )
                )
    return pd.DataFrame(rows)


def _gallery(samples, class_names=("neg", "pos"), positive=1, **options):
    return case_gallery(
        _frame(samples, class_names),
        class_names,
        positive,
        models=["base", "var"],
        baseline="base",
        **options,
    )


def test_the_most_discordant_samples_come_first_ties_by_id_and_concordant_ones_are_left_out():
    samples = {
        "b-alternating": (1, dict(base=[0.9, 0.1, 0.9, 0.1], var=[0.1, 0.9, 0.1, 0.9])),  # 4 of 4, each
        "z-always": (1, dict(base=[0.9] * 4, var=[0.1] * 4)),  # exactly one right in 4 of 4, always base
        "m-once": (0, dict(base=[0.2] * 4, var=[0.2, 0.7, 0.2, 0.2])),  # 1 of 4
        "both-wrong": (1, dict(base=[0.3] * 4, var=[0.4] * 4)),  # never exactly one right
        "both-right": (0, dict(base=[0.1] * 4, var=[0.3] * 4)),
        "a-always": (0, dict(base=[0.8] * 4, var=[0.2] * 4)),  # 4 of 4, the other way round
        "h-twice": (1, dict(base=[0.6, 0.4, 0.6, 0.4], var=[0.6] * 4)),  # 2 of 4
    }
    gallery = _gallery(samples)
    cases = gallery.discordant["var"]
    # equal shares: first where the same model was right each time, then by id
    assert [c.sample_id for c in cases] == ["a-always", "z-always", "b-alternating", "h-twice", "m-once"]
    assert [c.disagreement for c in cases] == [1.0, 1.0, 1.0, 0.5, 0.25] and {c.pairs for c in cases} == {4}
    first = cases[0]
    assert first.label == "neg" and first.right == dict(base=0.0, var=1.0)
    assert first.probability == pytest.approx(dict(base=0.8, var=0.2)) and first.n == dict(base=4, var=4)
    h = cases[3]
    assert h.probability["base"] == pytest.approx(0.5) and h.right == dict(base=0.5, var=1.0)
    assert gallery.probability_of == "pos" and gallery.baseline == "base"
    assert len(_gallery(samples, k=2).discordant["var"]) == 2


def test_confidently_wrong_holds_samples_wrong_in_most_predictions_by_mean_wrong_probability():
    samples = {
        "sure-wrong": (1, dict(base=[0.05] * 4, var=[0.9] * 4)),  # P(wrong) 0.95
        "half-wrong": (0, dict(base=[0.99, 0.99, 0.1, 0.1], var=[0.1] * 4)),  # wrong in 2 of 4: not most
        "less-sure": (0, dict(base=[0.7, 0.7, 0.7, 0.4], var=[0.1] * 4)),  # wrong in 3 of 4, P 0.625
        "b-tie": (1, dict(base=[0.2] * 4, var=[0.9] * 4)),  # P(wrong) 0.8, tied with c-tie
        "c-tie": (0, dict(base=[0.8] * 4, var=[0.1] * 4)),
        "right": (1, dict(base=[0.9] * 4, var=[0.9] * 4)),
    }
    gallery = _gallery(samples)
    wrong = gallery.confidently_wrong["base"]
    assert [c.sample_id for c in wrong] == ["sure-wrong", "b-tie", "c-tie", "less-sure"]
    assert wrong[0].probability["base"] == pytest.approx(0.05)  # the positive class's probability
    assert wrong[3].right["base"] == 0.25 and wrong[3].probability["base"] == pytest.approx(0.625)
    assert all(c.disagreement is None for c in wrong)
    assert set(wrong[0].probability) == {"base", "var"}  # every model, to see whether the other knew
    assert gallery.confidently_wrong["var"] == ()  # var is right on every sample


def test_with_three_classes_a_case_is_right_when_its_most_probable_class_is_true():
    names = ("a", "b", "c")
    samples = {
        # both wrong, but with different classes: not discordant (exactly one right, never)
        "wrong-apart": (0, dict(base=[(0.2, 0.7, 0.1)] * 4, var=[(0.2, 0.1, 0.7)] * 4)),
        "var-right": (2, dict(base=[(0.5, 0.2, 0.3)] * 4, var=[(0.1, 0.2, 0.7)] * 4)),
    }
    gallery = _gallery(samples, class_names=names, positive=2)
    (case,) = gallery.discordant["var"]
    assert case.sample_id == "var-right" and case.label == "c"
    assert case.probability == pytest.approx(dict(base=0.3, var=0.7))  # of the true class
    assert gallery.probability_of is None
    assert [c.sample_id for c in gallery.confidently_wrong["base"]] == ["wrong-apart", "var-right"]


def test_discordance_counts_only_the_pairs_both_models_finished():
    samples = {"s": (1, dict(base=[0.9] * 4, var=[0.1, 0.1]))}  # var finished repeat 0 only
    (case,) = _gallery(samples).discordant["var"]
    assert case.pairs == 2 and case.disagreement == 1.0 and case.n == dict(base=4, var=2)


# -- thumbnails ---------------------------------------------------------------------------------


def test_thumbnails_are_small_keyed_by_sample_id_and_read_back(tmp_path):
    data = make_demo(12, image_size=200, seed=3)
    path = write_thumbnails(data, tmp_path)
    assert path == tmp_path / THUMBNAILS_NAME
    assert path.stat().st_size < 12 * 64 * 64 + 2000  # compressed, never more than the raw 64 px pixels
    thumbnails = read_thumbnails(tmp_path)
    assert list(thumbnails) == data.sample_ids.tolist()
    first = thumbnails[data.sample_ids[0]]
    assert first.shape == (64, 64) and first.dtype == np.uint8
    expected = np.asarray(Image.fromarray(data.images[0, 0]).resize((64, 64), Image.Resampling.BOX))
    assert np.array_equal(first, expected)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_small_images_keep_their_pixels_colour_keeps_its_channels_and_placeholders_get_none(tmp_path):
    data = make_demo(6, image_size=28, seed=4)
    assert np.array_equal(make_thumbnails(data), data.images[:, 0])
    rgb = np.random.default_rng(0).integers(0, 256, (4, 3, 100, 50), dtype=np.uint8)
    colour = Dataset(rgb, np.array([0, 1, 0, 1]), ("x", "y"), 1, np.array(list("abcd")))
    assert make_thumbnails(colour).shape == (4, 64, 32, 3)
    tabular = Dataset(np.zeros((4, 1, 1, 1), np.uint8), colour.labels, ("x", "y"), 1, colour.sample_ids)
    assert make_thumbnails(tabular) is None and write_thumbnails(tabular, tmp_path) is None
    assert read_thumbnails(tmp_path) is None  # no file: no thumbnails
    (tmp_path / THUMBNAILS_NAME).write_bytes(b"not an archive")
    assert read_thumbnails(tmp_path) is None


# -- on a run -----------------------------------------------------------------------------------

HOSTILE_ID = "<script>s{i}</script>$x_{i}$*"
SMALL = dict(baseline="logreg", folds=2, repeats=2, epochs=1, progress=False)


@pytest.fixture(scope="module")
def hostile_data(tiny):
    ids = np.array([HOSTILE_ID.format(i=i) for i in range(len(tiny))])
    return Dataset(tiny.images, tiny.labels, tiny.class_names, tiny.positive, ids, name="tiny")


def _evaluate(data, out):
    with warnings.catch_warnings():  # the example's search space, unused without --nested
        warnings.simplefilter("ignore")
        return cvkit.evaluate("plugins/mlp_head.py", data=data, out=out, **SMALL)


@pytest.fixture(scope="module")
def run(hostile_data, tmp_path_factory):
    """logreg against the MLP head example (the smallest two-model run), 2 folds x 2 repeats, every
    sample id hostile HTML, Markdown and mathtext."""
    results = _evaluate(hostile_data, tmp_path_factory.mktemp("gallery") / "run")
    return results, cvkit.compare(results)


def _section(html: str) -> str:
    start = html.index('<section id="cases">')
    return html[start : html.index("</section>", start)]


def test_evaluate_keeps_a_thumbnail_of_every_sample_and_writes_a_missing_file_again(
    run, hostile_data, tmp_path
):
    results, _ = run
    thumbnails = read_thumbnails(results.run_dir)
    assert sorted(thumbnails) == sorted(hostile_data.sample_ids.tolist())
    for sample_id, image in zip(hostile_data.sample_ids, hostile_data.images):
        assert np.array_equal(thumbnails[sample_id], image[0])  # 16 px: kept as it is
    copy = tmp_path / "run"
    shutil.copytree(results.run_dir, copy)
    (copy / THUMBNAILS_NAME).unlink()  # a run made before cvkit kept them
    resumed = _evaluate(hostile_data, copy)
    assert resumed.counts.trained == 0 and (copy / THUMBNAILS_NAME).exists()


def test_html_shows_each_case_with_its_embedded_picture_and_escapes_sample_ids(run, hostile_data, tmp_path):
    results, report = run
    images = dict(zip(hostile_data.sample_ids, hostile_data.images[:, 0]))
    gallery = report.clinical.cases
    html = write_reports(results, report, ["html"], out_dir=tmp_path)["html"].read_text(encoding="utf-8")
    section = _section(html)
    shown = [
        c for cases in (*gallery.discordant.values(), *gallery.confidently_wrong.values()) for c in cases
    ]
    assert shown and len(gallery.discordant["mlp_head"]) > 0
    pictures = re.findall(
        r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" width="(\d+)" height="(\d+)"', section
    )
    assert len(pictures) == len(shown) == section.count('<figure class="case">')
    for (data, width, height), case in zip(pictures, shown):
        image = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))))
        assert np.array_equal(image, images[case.sample_id])  # the sample's own picture
        assert (int(width), int(height)) == (128, 128)  # 16 px scaled by 8, pixel for pixel
    assert "<script>s" not in html and "&lt;script&gt;s" in section
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # no network resource
    first = gallery.discordant["mlp_head"][0]
    caption = section[section.index("<figcaption>") : section.index("</figcaption>")]
    right = round(first.right["logreg"] * first.n["logreg"])
    assert f"P {first.probability['logreg']:.2f}, right {right}/{first.n['logreg']}" in caption
    assert f"exactly one right: {round(first.disagreement * first.pairs)}/{first.pairs}" in caption
    assert "exactly one of the variant and the baseline predicted the true class" in section  # estimand


def test_markdown_links_an_existing_contact_sheet_and_tabulates_the_numbers(run, tmp_path):
    import matplotlib.pyplot as plt

    results, report = run
    before = plt.get_fignums()
    md = write_reports(results, report, ["md"], out_dir=tmp_path)["md"].read_text(encoding="utf-8")
    assert plt.get_fignums() == before  # drawn on its own Figure, nothing left open in pyplot
    (link,) = re.findall(r"\]\((figures/cases\.png)\)", md)
    sheet = Image.open(tmp_path / link)
    assert sheet.format == "PNG" and sheet.width > 600
    section = md[md.index("## Discordant and confidently wrong cases") : md.index("## Figures")]
    assert "<script>" not in section and "$x" not in section.replace("\\$x", "")  # escaped: \$x
    first = report.clinical.cases.discordant["mlp_head"][0]
    row = next(
        line for line in section.splitlines() if line.startswith("| " + escape.markdown(first.sample_id))
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == first.label and cells[2] == f"{first.probability['logreg']:.2f}"
    assert cells[-1] == f"{round(first.disagreement * first.pairs)}/{first.pairs}"


def test_a_run_folder_without_thumbnails_reports_the_cases_without_pictures(run, tmp_path):
    results, _ = run
    copy = tmp_path / "old"
    shutil.copytree(results.run_dir, copy, ignore=shutil.ignore_patterns("report*", "figures"))
    (copy / THUMBNAILS_NAME).unlink()
    old = cvkit.load(copy)
    written = write_reports(old, cvkit.compare(old), ["html", "md"])
    section = _section(written["html"].read_text(encoding="utf-8"))
    assert "data:image" not in section and "thumbnails are not in the run folder" in section
    assert section.count('<figure class="case">') > 0  # the cases are still listed
    md = written["md"].read_text(encoding="utf-8")
    assert "figures/cases.png" not in md and not (copy / "figures" / "cases.png").exists()
    assert "thumbnails are not in the run folder" in md and "| sample | true class |" in md


def test_json_holds_the_numbers_of_the_gallery_but_no_image(run, tmp_path):
    results, report = run
    write_json(results, tmp_path / "run.json", report)
    text = (tmp_path / "run.json").read_text(encoding="utf-8")
    record = json.loads(text)["comparison"]["clinical"]["cases"]
    gallery = report.clinical.cases
    (first, *_) = record["discordant"]["mlp_head"]
    case = gallery.discordant["mlp_head"][0]
    assert first["sample_id"] == case.sample_id and first["disagreement"] == case.disagreement
    assert first["mean_probability"] == pytest.approx(case.probability) and first["n_pairs"] == case.pairs
    assert [c["sample_id"] for c in record["confidently_wrong"]["logreg"]] == [
        c.sample_id for c in gallery.confidently_wrong["logreg"]
    ]
    assert record["probability_of"] == "malignant" and "exactly one" in record["estimands"]["discordant"]
    assert "base64" not in text and "iVBOR" not in text  # numbers, not pictures


def test_the_checklist_answers_failure_analysis_with_the_gallery(run, tmp_path):
    results, report = run
    md = write_reports(results, report, ["md"], out_dir=tmp_path)["md"].read_text(encoding="utf-8")
    section = md[md.index("## Reporting checklist") : md.index("## Glossary")]
    authors = section[section.index("For the authors") :]
    answered = section[: section.index("For the authors")]
    assert "**Failure analysis**: case gallery" in answered and "with their images" in answered
    assert "Failure analysis" not in authors
    without = cvkit.compare(results, clinical=False)
    md = write_reports(results, without, ["md"], out_dir=tmp_path / "plain")["md"].read_text(encoding="utf-8")
    assert "**Failure analysis**" in md[md.index("For the authors") :]
