"""A model card as a registered version's description: MLflow's SQL stores hold 5,000 characters
(PostgreSQL refuses more), so a longer card gives up its least needed sections, and says so."""

from __future__ import annotations

from deepfake_detection.evaluation.card import DESCRIPTION_LIMIT, fit_description


def _card(recipe_lines: int) -> str:
    sections = {
        "What it detects": "Scores how likely an image is fake.",
        "Training data": "840 images.",
        "Test metrics": "Test ROC AUC **0.9000**.",
        "Robustness": "| jpeg_75 | 0.80 |",
        "Training recipe": "\n".join(f"- network {i}: a long line of settings" for i in range(recipe_lines)),
        "Lineage": "- `evaluate-x` run: `abc`",
        "How to load and call it": "mlflow.pyfunc.load_model(...)",
        "Limitations": "**Worst perturbation: `blur_2`**",
    }
    return "# Model card: det version 1\n\n" + "\n".join(f"## {k}\n\n{v}\n" for k, v in sections.items())


def test_a_card_that_fits_is_the_description_as_it_is():
    card = _card(3)
    assert fit_description(card) == card


def test_a_long_card_drops_its_recipe_first_and_names_what_it_left_out():
    card = _card(400)
    assert len(card) > DESCRIPTION_LIMIT
    text = fit_description(card)
    assert len(text) <= DESCRIPTION_LIMIT
    assert "## Training recipe" not in text and "leaves out Training recipe" in text and "model_card.md" in text
    for kept in ("## What it detects", "## Test metrics", "## Lineage", "## How to load and call it", "## Limitations"):
        assert kept in text, kept
    assert text.startswith("# Model card: det version 1")
