"""Write the HTML template that makes `dvc plots show` render offline.

DVC 3.67 fills its page's ``{scripts}`` placeholder with ``<script src="https://cdn.jsdelivr.net/...">``
tags (vega 5, vega-lite 5, vega-embed 6): without the network its charts stay blank. This
template has no ``{scripts}`` placeholder; it holds the three libraries inlined instead, taken
from their npm packages (``npm pack``; the same majors DVC asks for), and ``{plot_divs}`` where
DVC puts the charts. ``.dvc/config`` names it (``plots.html_template``), so a plain
``dvc plots show`` uses it.

Usage: ``python tools/plots_template.py [OUT]`` (default ``tools/dvc_plots_offline.html``);
``make plots-template`` runs it. Needs ``npm`` and the npm registry, only when regenerating.
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import tempfile
from pathlib import Path

# The majors DVC 3.67's dvc_render asks for (vega@5.20.2, vega-lite@5.2.0, vega-embed@6.18.2),
# at their latest releases.
LIBRARIES = {"vega": "5.33.1", "vega-lite": "5.23.0", "vega-embed": "6.29.0"}
DEFAULT_OUT = Path(__file__).resolve().parent / "dvc_plots_offline.html"

PAGE = """<!DOCTYPE html>
<!-- DVC plots page for offline viewing, written by tools/plots_template.py.
     Inlined: {versions} (npm registry, build/*.min.js; BSD-3-Clause, vega-embed bundles MIT/ISC helpers). -->
<html>
<head>
    <meta charset="utf-8">
    {{refresh_tag}}
    <title>DVC Plot</title>
{scripts}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def fetch_build(package: str, version: str, workdir: Path) -> str:
    """``build/<package>.min.js`` of ``package@version``, from ``npm pack``."""
    name = (
        subprocess.run(
            ["npm", "pack", "--silent", f"{package}@{version}"], cwd=workdir, check=True, capture_output=True, text=True
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    with tarfile.open(workdir / name) as tar:
        member = tar.extractfile(f"package/build/{package}.min.js")
        if member is None:
            raise FileNotFoundError(f"{package}@{version} has no build/{package}.min.js")
        return member.read().decode("utf-8")


def render(sources: dict[str, str], versions: dict[str, str]) -> str:
    """The template: each library in its own inline ``<script>`` (``</script`` escaped)."""
    escaped = {name: src.replace("</script", "<\\/script") for name, src in sources.items()}
    scripts = "\n".join(
        f'    <script data-library="{name}@{versions[name]}">\n{src}\n    </script>' for name, src in escaped.items()
    )
    listed = ", ".join(f"{name}@{version}" for name, version in versions.items())
    # the placeholders {refresh_tag} and {plot_divs} stay for DVC; {scripts} must not appear
    return PAGE.format(versions=listed, scripts=scripts)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    out = parser.parse_args(argv).out
    with tempfile.TemporaryDirectory() as tmp:
        sources = {name: fetch_build(name, version, Path(tmp)) for name, version in LIBRARIES.items()}
    out.write_text(render(sources, LIBRARIES), encoding="utf-8")
    print(f"{out}: {out.stat().st_size / 1e6:.2f} MB ({', '.join(f'{n}@{v}' for n, v in LIBRARIES.items())})")
    return out


if __name__ == "__main__":
    main()
