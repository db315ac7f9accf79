"""One look per optimizer: every registered optimizer has its own style, variants keep theirs."""

import matplotlib.colors as mcolors
import pytest

from optbench import optim, styles


def test_every_registered_optimizer_has_a_distinct_colour_line_style_and_marker():
    looks = {name: (styles.style(name).color, styles.style(name).dashes, styles.style(name).marker) for name in optim.available()}
    assert len(set(looks.values())) == len(looks), looks
    assert set(styles.STYLES) == set(optim.available())
    labels = [styles.label(name) for name in optim.available()]
    assert len(set(labels)) == len(labels)


def test_colours_are_okabe_ito_and_families_are_known():
    allowed = {mcolors.to_hex(color) for color in styles.OKABE_ITO.values()}
    for name, style in styles.STYLES.items():
        assert mcolors.to_hex(style.color) in allowed, name
        assert style.family in styles.FAMILIES, name


def test_variants_keep_their_look_everywhere():
    first = styles.register_variants("padam", ["Padam p=1/16 (test)", "Padam p=1/8 (test)", "Padam p=1/4 (test)"])
    again = styles.register_variants("padam", ["Padam p=1/16 (test)", "Padam p=1/8 (test)", "Padam p=1/4 (test)"])
    assert first == again and len({style.color for style in first}) == 3
    assert all(style.marker == styles.style("padam").marker for style in first)
    with pytest.raises(ValueError, match="already has another style"):
        styles.register_variants("padam", ["Padam p=1/4 (test)", "Padam p=1/16 (test)"])
    with pytest.raises(ValueError, match="no style for 'adamx'"):
        styles.style("adamx")


def test_every_marker_is_filled_so_that_any_optimizers_can_share_a_figure():
    # seaborn raises "Filled and line art markers cannot be mixed" otherwise
    from matplotlib.markers import MarkerStyle

    assert all(MarkerStyle(styles.style(name).marker).is_filled() for name in optim.available())
