"""Public functions say what each parameter is, in a numpydoc ``Parameters`` section (as
scikit-learn does), and the section lists exactly the parameters of the signature: a renamed,
added or removed parameter fails here until its docstring follows."""

import importlib
import inspect
import re

import pytest

import cvkit

PACKAGES = (
    "cvkit",
    "cvkit.data",
    "cvkit.splits",
    "cvkit.trainers",
    "cvkit.runner",
    "cvkit.stats",
    "cvkit.report",
)

# Public functions still documented in prose only. Each is to get its Parameters section; the list
# may only shrink (a test fails on a name here that has one, or that is no longer public).
PROSE_ONLY = {
    "cvkit.data": {
        "check_missing", "check_window", "drop_duplicates", "find_duplicates", "handcrafted_features",
        "join_extra_csv", "load_image_folder", "load_manifest", "load_medmnist", "make_demo", "to_8bit",
        "with_extra",
    },
    "cvkit.trainers": {
        "backbone", "classifier", "describe_plugin", "ensure_pretrained", "feature_maps", "fetch_pretrained",
        "is_backbone", "job_process_state", "plugin_frame", "preflight", "resnet", "write_plugin_template",
    },
    "cvkit.runner": {
        "check_probabilities", "check_writable", "choose_concurrency", "job_seed", "make_executor",
        "prepare_process", "register_executor", "run_job", "store_bytes", "verify_jobs",
    },
    "cvkit.stats": {
        "detectable_effect", "difference_test", "difference_variance", "estimate_variance_model",
        "seed_noise_check", "bayes_correlated_ttest", "benjamini_hochberg", "bootstrap_score",
        "classification_metrics", "corrected_ttest_power", "decide", "default_rope", "design_needed",
        "friedman", "holm_levels", "metric_label", "mcnemar_detectable_difference",
        "minimal_detectable_effect", "naive_paired_ttest", "predict_classes", "prob_outperform",
        "smallest_confirmable_rope", "variance_components", "verdicts",
    },
    "cvkit.report": {
        "check_not_store", "describe_run", "draw_figures", "ranking_record", "render_comparison",
        "render_ranking", "render_summary", "render_verification", "report_record", "verdict_paragraph",
        "write_cd_diagram", "resolve_tracking_uri", "results_html", "write_json", "write_predictions_csv",
        "write_ranking_json",
    },
}  # fmt: skip


def _public():
    """(package, name, object) of every public function of each package, and of every class that
    ``cvkit`` itself exports (the config objects, ``Results``) but its error types; plus
    ``compare_runs``, the comparison module's other public function."""
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            is_class = inspect.isclass(obj) and not issubclass(obj, BaseException)
            if inspect.isfunction(obj) or (package == "cvkit" and is_class):
                yield package, name, obj
    yield "cvkit.comparison", "compare_runs", cvkit.comparison.compare_runs


def _documented(obj) -> list[str] | None:
    """The parameter names listed in the docstring's numpydoc Parameters section, or None."""
    doc = inspect.getdoc(obj) or ""
    section = re.search(r"^Parameters\n-{10,}\n(.*?)(?=^\S[^\n]*\n-{3,}\n|\Z)", doc, flags=re.M | re.S)
    if section is None:
        return None
    # An entry starts at the left margin: "name : type", "name" or "**options".
    return [
        re.split(r"\s*:", line)[0] for line in section.group(1).splitlines() if re.match(r"\*{0,2}\w", line)
    ]


def _parameters(obj) -> list[str]:
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [stars.get(p.kind, "") + p.name for p in inspect.signature(obj).parameters.values()]


CHECKED = [
    (package, name, obj) for package, name, obj in _public() if name not in PROSE_ONLY.get(package, ())
]


@pytest.mark.parametrize("package, name, obj", CHECKED, ids=[f"{p}.{n}" for p, n, _ in CHECKED])
def test_a_public_function_lists_its_parameters(package, name, obj):
    documented, parameters = _documented(obj), _parameters(obj)
    assert documented is not None or not parameters, f"{package}.{name} has no numpydoc Parameters section"
    assert (documented or []) == parameters, f"{package}.{name}: its docstring lists {documented}"


def test_the_prose_only_list_only_shrinks():
    public = {(package, name): obj for package, name, obj in _public()}
    for package, names in PROSE_ONLY.items():
        for name in names:
            assert (package, name) in public, f"{package}.{name} is no longer public: drop it from PROSE_ONLY"
            assert _documented(public[package, name]) is None, f"{package}.{name} is documented: drop it"
    assert len(CHECKED) >= 25


def test_the_section_parser_reads_numpydoc():
    def documented(a, b=1, *rest, **options):
        """Summary.

        Parameters
        ----------
        a : int
            The first.
        b : int, default=1
            The second:
            b : not an entry (indented).
        *rest
            More.
        **options
            Named.

        Returns
        -------
        int
        """

    assert _documented(documented) == ["a", "b", "*rest", "**options"] == _parameters(documented)
    assert _documented(lambda x: x) is None
