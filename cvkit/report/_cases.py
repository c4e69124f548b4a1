"""The case gallery of the HTML and Markdown reports: the test images on which a variant and the
baseline disagree most often, and those each model gets wrong most confidently.

The numbers come from ``ClinicalReport.cases`` (``cvkit.clinical.case_gallery``); the pictures
from the thumbnails ``evaluate`` kept in the run folder (``Results.thumbnails``). A run without
them (made before cvkit kept them) gets the same lists without pictures and a note saying so.
Captions hold sample ids, class and model names (user strings): each renderer escapes them.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np

from ._format import number
from ._narrative import ESTIMANDS

# The most CSS pixels the HTML shows a thumbnail's longest side at: the browser scales it by a whole
# factor (28 px by 4, 64 px by 2), each pixel a sharp block.
DISPLAY_SIDE = 128
NO_THUMBNAILS = (
    "The thumbnails are not in the run folder (a run made before cvkit kept them, or data without "
    "pictures): the cases are listed without their images."
)


@dataclass(frozen=True)
class CaseCard:
    sample_id: str
    label: str  # the true class
    models: tuple[tuple[str, str, str], ...]  # (model, mean probability, "right k/n")
    disagreement: str  # "k/n" of paired predictions with exactly one model right; "" outside discordant lists
    thumbnail: np.ndarray | None  # uint8 (h, w) or (h, w, 3)

    @property
    def png_base64(self) -> str:
        return base64.b64encode(thumbnail_png(self.thumbnail)).decode("ascii")

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) in CSS pixels: the thumbnail's scaled by the largest whole factor that
        keeps its longest side within ``DISPLAY_SIDE`` (at least 1)."""
        height, width = self.thumbnail.shape[:2]
        scale = max(1, DISPLAY_SIDE // max(height, width))
        return width * scale, height * scale


@dataclass(frozen=True)
class CaseSection:
    key: str  # the HTML anchor
    title: str
    models: tuple[str, ...]  # the models each card describes, in order
    cards: tuple[CaseCard, ...]
    empty: str  # what to say when there are no cards


def case_gallery_context(gallery, thumbnails) -> dict | None:
    """The gallery as plain values for the documents: ``probability`` (what P is), ``notes``,
    ``sections`` (``CaseSection``), ``pictures`` (whether any card has one) and the estimands."""
    if gallery is None:
        return None
    thumbnails = thumbnails or {}
    sections = []
    for i, (variant, cases) in enumerate(gallery.discordant.items(), start=1):
        models = (gallery.baseline, variant)
        sections.append(
            CaseSection(
                key=f"discordant-{i}",
                title=f"{variant} vs {gallery.baseline}: the test images they disagree on most often",
                models=models,
                cards=tuple(_card(c, models, thumbnails) for c in cases),
                empty=f"{variant} and {gallery.baseline} were right or wrong together on every test image.",
            )
        )
    for i, (model, cases) in enumerate(gallery.confidently_wrong.items(), start=1):
        sections.append(
            CaseSection(
                key=f"wrong-{i}",
                title=f"{model}: the test images it gets wrong most confidently",
                models=gallery.models,
                cards=tuple(_card(c, gallery.models, thumbnails) for c in cases),
                empty=f"{model} got no test image wrong in more than half of its predictions.",
            )
        )
    cards = [card for section in sections for card in section.cards]
    notes = [] if not cards or any(c.thumbnail is not None for c in cards) else [NO_THUMBNAILS]
    probability = (
        f"the mean predicted probability of {gallery.probability_of}"
        if gallery.probability_of is not None
        else "the mean predicted probability of the true class"
    )
    return dict(
        probability=probability,
        notes=notes,
        sections=sections,
        pictures=any(c.thumbnail is not None for c in cards),
        discordant_note=ESTIMANDS["discordant"],
        wrong_note=ESTIMANDS["confidently_wrong"],
    )


def _card(case, models, thumbnails) -> CaseCard:
    shown = tuple(
        (
            model,
            number(case.probability[model], 2),
            f"{_count(case.right[model], case.n[model])}/{case.n[model]}",
        )
        for model in models
        if model in case.probability
    )
    disagreement = (
        "" if case.disagreement is None else f"{_count(case.disagreement, case.pairs)}/{case.pairs}"
    )
    return CaseCard(case.sample_id, case.label, shown, disagreement, thumbnails.get(case.sample_id))


def _count(share: float, n: int) -> int:
    return int(round(share * n))


def thumbnail_png(image: np.ndarray) -> bytes:
    """A thumbnail as PNG bytes, at its own size (the page scales it; one pixel a block)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def cases_record(gallery) -> dict | None:
    """The gallery's numbers as plain values for JSON (no images)."""
    if gallery is None:
        return None

    def case(c) -> dict:
        return dict(
            sample_id=c.sample_id,
            label=c.label,
            mean_probability=dict(c.probability),
            right_share=dict(c.right),
            n_predictions=dict(c.n),
            **({} if c.disagreement is None else dict(disagreement=c.disagreement, n_pairs=c.pairs)),
        )

    return dict(
        baseline=gallery.baseline,
        models=list(gallery.models),
        probability_of=gallery.probability_of,
        k=gallery.k,
        discordant={v: [case(c) for c in cases] for v, cases in gallery.discordant.items()},
        confidently_wrong={m: [case(c) for c in cases] for m, cases in gallery.confidently_wrong.items()},
        estimands={k: ESTIMANDS[k] for k in ("discordant", "confidently_wrong")},
    )
