"""`dvc plots show` renders offline: the HTML template named in .dvc/config holds vega, vega-lite
and vega-embed inlined, in the majors DVC's own page asks its CDN for, and no CDN link."""

from __future__ import annotations

import configparser
import importlib.util
import re
from pathlib import Path

from dvc_render.vega import VegaRenderer

ROOT = Path(__file__).resolve().parents[2]


def _template() -> Path:
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    return (ROOT / ".dvc" / config["plots"]["html_template"]).resolve()


def test_dvc_config_names_an_offline_template_with_the_majors_dvc_asks_for():
    html = _template().read_text(encoding="utf-8")
    assert "{plot_divs}" in html, "DVC fills this placeholder with the charts"
    assert "{scripts}" not in html, "DVC would fill it with its CDN <script src=...> tags"
    assert "<script src" not in html
    code = re.findall(r"<script data-library[^>]*>(.*?)\n    </script>", html, re.S)
    assert len(code) == 3 and not any("</script" in c for c in code)
    cdn = dict(re.findall(r"npm/([a-z-]+)@(\d+)\.", VegaRenderer.SCRIPTS))  # what DVC's page loads
    inlined = dict(re.findall(r'<script data-library="([a-z-]+)@(\d+)\.', html))
    assert cdn == inlined == {"vega": "5", "vega-lite": "5", "vega-embed": "6"}
    assert len(html) > 500_000, "the libraries' code is in the page"


def test_the_generator_escapes_closing_script_tags_and_records_the_versions():
    spec = importlib.util.spec_from_file_location("plots_template", ROOT / "tools" / "plots_template.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    html = module.render({"vega": 'x="</script>";'}, {"vega": "5.0.0"})
    assert 'x="<\\/script>";' in html and "vega@5.0.0" in html.split("<html>")[0]
    assert "{plot_divs}" in html and "{refresh_tag}" in html and "{scripts}" not in html
