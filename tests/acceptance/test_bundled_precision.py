"""Every bundled decoder keeps the precision the README states, in the default test run.

Each check is the README's own measurement (``python benchmarks/decoder_precision.py --probed NAME``:
40 seeded held-out queries × 50 samples at T=1, every site; 6-13 s per model on a 2-core CPU), and
fails when the mean per-site precision falls more than ``MARGIN`` under the README's figure. On the
machine that measured the figures the check reads them exactly; the margin absorbs numerical
differences between CPUs (a sample that flips moves a mean by 1/2,000 of a site), while a real
regression (a wrong site id, a broken scale, a stale decoder) costs tens of points.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from inversionview.decoder.evaluate import decoder_precision
from inversionview.decoder.store import load_decoder
from inversionview.probed import load_probed

README_FIGURES = {"counting": 0.905, "addition": 0.744, "ioi": 0.898, "facts": 0.708}
"""Mean per-site precision as the README states it, per bundled decoder."""
MARGIN = 0.03
"""Three points: about twice the standard error over queries of counting's and IOI's figures (1.3 and
1.5 points), and near addition's (3.2)."""


README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_guarded_figures_are_the_readmes():
    text = README.read_text()
    for name, figure in README_FIGURES.items():
        assert f"**{100 * figure:.1f} %**" in text, f"the README no longer states {name}'s {figure:.1%}"


@pytest.mark.parametrize("name", sorted(README_FIGURES))
def test_bundled_decoder_keeps_the_precision_the_readme_states(name):
    probed = load_probed(name)
    result = decoder_precision(load_decoder(None, probed), probed)
    floor = README_FIGURES[name] - MARGIN
    assert result.mean >= floor, (
        f"bundled {name} decoder: mean per-site precision {result.mean:.1%} (± {result.standard_error:.1%}), "
        f"more than {MARGIN:.0%} under the README's {README_FIGURES[name]:.1%}; by site: {result.by_site}"
    )
