"""`make compare` (`deepfake-detect compare`): the DVC experiments side by side in a terminal.

``dvc exp show`` at 120 columns prints mostly "…": its columns are named by file and key
(``metrics/registered.json:test_auc``) and every model's scores and robustness table is a metric.
This runs ``dvc exp show`` with :data:`DVC_FLAGS` (the params that differ between rows, and the
registered model's headline numbers: ``--only-changed``, ``--drop`` the per-model tables,
``--keep`` ``metrics/registered.json``) as CSV and prints it with short column names, 3 decimals,
at most ``width`` characters wide: the columns that do not fit (the last changed params) are named
under the table instead.
"""

from __future__ import annotations

import io
import subprocess

import pandas as pd

DVC_FLAGS = (
    "--only-changed",
    "--drop",
    "metrics/(scores|robustness|external)",
    "--keep",
    "metrics/registered.json",
)
HEADLINE = {  # the registered model's numbers (metrics/registered.json): short names
    "val_auc": "val_auc",
    "test_auc": "test_auc",
    "test_auc_low": "low",
    "test_auc_high": "high",
    "threshold": "thr",
}
REGISTERED = "metrics/registered.json:"
WIDTH = 120


def exp_show_csv(cwd=None) -> str:
    """``dvc exp show --csv`` with :data:`DVC_FLAGS`, run in ``cwd``."""
    done = subprocess.run(["dvc", "exp", "show", "--csv", *DVC_FLAGS], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"dvc exp show failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def short_table(csv_text: str) -> pd.DataFrame:
    """One row per experiment (its name, else the commit or ``workspace``), when it was made, the
    registered model's headline numbers, then the params that differ between rows."""
    raw = pd.read_csv(io.StringIO(csv_text))
    if raw.empty:
        return pd.DataFrame(columns=["experiment", "created", *HEADLINE.values()])
    name = raw["rev"].astype(str)
    if "Experiment" in raw:
        name = raw["Experiment"].where(raw["Experiment"].notna(), name).astype(str)
    created = pd.to_datetime(raw.get("Created"), errors="coerce").dt.strftime("%m-%d %H:%M").fillna("")
    out = pd.DataFrame({"experiment": name, "created": created})
    for key, short in HEADLINE.items():
        if f"{REGISTERED}{key}" in raw:
            out[short] = pd.to_numeric(raw[f"{REGISTERED}{key}"], errors="coerce")
    meta = {"Experiment", "rev", "typ", "Created", "parent", "State", "Executor"}
    for column in raw.columns:
        if column not in meta and not column.startswith(REGISTERED) and ":" not in column:
            out[column] = raw[column]  # a changed param, by its dotted name
    return out


def render(table: pd.DataFrame, width: int = WIDTH) -> str:
    """``table`` as text at most ``width`` wide: floats with 3 decimals, blanks for missing values;
    the last columns that do not fit are listed under it."""
    table = table.copy()
    for column in ("experiment", "created"):  # names read from the left
        if column in table:
            values = table[column].astype(str)
            table[column] = values.str.ljust(max(values.str.len().max(), len(column)))
    shown, left_out = table, []
    while True:
        text = shown.to_string(index=False, na_rep="", float_format=lambda v: f"{v:.3f}")
        if max((len(line) for line in text.splitlines()), default=0) <= width or shown.shape[1] <= 2:
            break
        left_out.insert(0, shown.columns[-1])
        shown = shown.iloc[:, :-1]
    if left_out:
        text += "\n" + _wrap(f"Changed too, not shown: {', '.join(left_out)} (dvc exp show --only-changed).", width)
    return text


def _wrap(text: str, width: int) -> str:
    import textwrap

    return textwrap.fill(text, width)


def main(cwd=None, width: int = WIDTH) -> str:
    legend = _wrap(
        "The registered model of each experiment: val_auc (what register chose by), test_auc with its 95% interval "
        "[low, high], thr (threshold); then the params that differ between rows.",
        width,
    )
    return legend + "\n\n" + render(short_table(exp_show_csv(cwd)), width)
