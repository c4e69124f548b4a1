"""Leakage guards: duplicate images are found, reported against the split plan, and can be dropped."""

import dataclasses

import numpy as np
import pytest

import cvkit
from cvkit.data import find_duplicates, make_demo

FAST = dict(folds=3, repeats=1, epochs=1)


def _with_duplicates(data):
    """Sample 5 an exact copy of 3, sample 7 a slightly brighter copy of 2."""
    images = data.images.copy()
    images[5] = images[3]
    images[7] = np.clip(images[2].astype(int) + 3, 0, 255).astype(np.uint8)
    return dataclasses.replace(data, images=images)


def test_exact_and_near_duplicates_are_found_and_distinct_images_are_not():
    data = make_demo(120, image_size=16, seed=3)
    assert find_duplicates(data.images) == []
    pairs = find_duplicates(_with_duplicates(data).images)
    assert [(p.first, p.second, p.exact) for p in pairs] == [(2, 7, False), (3, 5, True)]


def test_duplicates_are_reported_against_the_plan_and_dedupe_drops_them(tiny, tmp_path):
    data = _with_duplicates(tiny)
    with pytest.warns(
        UserWarning,
        match=r"2 duplicate image pair\(s\) \(1 exact, 1 near-identical\), \d of them "
        r"split between training and test.*--dedupe keeps one image of each; if "
        r"duplicates mean the same patient, give a group",
    ):
        cvkit.evaluate([], data=data, out=tmp_path / "a" / "run", jobs=1, **FAST)
    # 7 copies 2 with its label: one is kept; 5 copies 3 (malignant) as benign: both go, named.
    with pytest.warns(UserWarning) as caught:
        results = cvkit.evaluate([], data=data, out=tmp_path / "b" / "run", jobs=1, dedupe=True, **FAST)
    messages = [str(w.message) for w in caught]
    assert "--dedupe: dropped 1 duplicate image(s) of the same label, kept one of each" in messages
    assert any("demo-0003 (malignant) = demo-0005 (benign)" in m for m in messages), messages
    assert len(results.sample_ids) == len(tiny) - 3
    assert set(results.sample_ids) == set(tiny.sample_ids) - set(tiny.sample_ids[[3, 5, 7]])


def test_duplicates_within_one_group_are_never_split(tiny, tmp_path):
    data = _with_duplicates(tiny)
    groups = np.array([f"p{i // 2}" for i in range(len(tiny))], dtype=object)
    groups[5], groups[7] = groups[3], groups[2]  # each duplicate belongs to its original's patient
    data = dataclasses.replace(data, groups=groups)
    with pytest.warns(UserWarning, match=r"2 duplicate image pair\(s\).*, 0 of them split between"):
        cvkit.evaluate([], data=data, out=tmp_path / "run", jobs=1, **FAST)
