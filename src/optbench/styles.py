"""How the book shows each optimizer: its display label, family, colour, line style and marker.

One look per optimizer, the same in every figure of every chapter. Colours come from the Okabe–Ito
palette (Okabe & Ito 2008), which stays distinguishable under the common colour-vision deficiencies;
with more optimizers than colours, the line style and the marker carry the difference, so every
registered optimizer has its own (colour, line style, marker) triple. Variants of one optimizer (Padam
with several values of p, say) keep its marker and take colours along a colour-blind-safe sequential map,
so their order is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib as mpl

#: Okabe–Ito, without its yellow (too pale on white for thin lines)
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
    "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7", "grey": "#7F7F7F",
}
#: matplotlib dash patterns by name (seaborn takes the same tuples; "" is a solid line)
DASHES = {"solid": "", "dashed": (5, 2), "dotted": (1.5, 1.5), "dashdot": (5, 1.5, 1.5, 1.5)}
#: the colour of the context curves behind a highlighted group
CONTEXT_GREY = "#C8C8C8"

#: families group the optimizers of small-multiple figures
FAMILIES = ("SGD and classic adaptive", "Adam and its corrections", "Adam extensions", "hybrid", "second order", "variance reduced")


@dataclass(frozen=True)
class Style:
    """A display label and how its curves are drawn."""

    label: str
    family: str
    color: str
    dashes: str | tuple
    marker: str | tuple

    @property
    def linestyle(self):
        """The dash pattern in matplotlib's form."""
        return "-" if self.dashes == "" else (0, self.dashes)


def _style(label, family, color, dashes, marker) -> Style:
    return Style(label, family, OKABE_ITO[color], DASHES[dashes], marker)


#: every registered optimizer, by registry name
STYLES: dict[str, Style] = {
    "sgd": _style("SGD+momentum", "SGD and classic adaptive", "black", "solid", "o"),
    "adam": _style("Adam", "Adam and its corrections", "blue", "solid", "s"),
    "amsgrad": _style("AMSGrad", "Adam and its corrections", "vermillion", "solid", "^"),
    "adamw": _style("AdamW", "Adam and its corrections", "bluish green", "solid", "D"),
    "nadam": _style("Nadam", "Adam and its corrections", "orange", "dashed", "v"),
    "radam": _style("RAdam", "Adam and its corrections", "reddish purple", "dashed", "P"),
    "adabelief": _style("AdaBelief", "Adam extensions", "sky blue", "dashed", "X"),
    "lookahead": _style("Lookahead(Adam)", "Adam extensions", "grey", "dashdot", "*"),
    "adam_scheduled_betas": _style("Adam (scheduled betas)", "Adam extensions", "black", "dotted", "h"),
    "padam": _style("Padam", "Adam extensions", "reddish purple", "solid", "p"),
    "adagrad": _style("AdaGrad", "SGD and classic adaptive", "orange", "solid", "<"),
    "rmsprop": _style("RMSprop", "SGD and classic adaptive", "sky blue", "solid", ">"),
    "atmo": _style("ATMO", "hybrid", "bluish green", "dashed", "d"),
    "padam_sgd": _style("PADAM-SGD", "hybrid", "vermillion", "dashed", "8"),
    "adasgd": _style("AdaSGD", "hybrid", "blue", "dashdot", "H"),
    # filled stars (six-, three- and four-pointed): seaborn refuses to mix line-art markers ("1", "2") with filled ones
    "adahessian": _style("AdaHessian", "second order", "vermillion", "dashdot", (6, 1, 0)),
    "svrg": _style("SVRG", "variance reduced", "blue", "dotted", (3, 1, 0)),
    "storm": _style("STORM", "variance reduced", "bluish green", "dotted", (4, 1, 0)),
}

_BY_LABEL = {style.label: style for style in STYLES.values()}
#: variants registered by the chapters (label → style), see :func:`register_variants`
_VARIANTS: dict[str, Style] = {}


def style(name_or_label: str) -> Style:
    """The style of a registered optimizer (by registry name or display label) or of a registered variant."""
    for table in (STYLES, _BY_LABEL, _VARIANTS):
        if name_or_label in table:
            return table[name_or_label]
    known = ", ".join(sorted(STYLES))
    raise ValueError(f"no style for {name_or_label!r}: give a registered optimizer ({known}), its label, or a variant registered with register_variants")


def label(name: str) -> str:
    """The display label of registered optimizer ``name``."""
    return style(name).label


def register_variants(base: str, labels: list[str], family: str | None = None, colormap: str = "cividis") -> list[Style]:
    """Styles for ordered variants of optimizer ``base`` (e.g. Padam at several p): its marker and line
    style, colours along ``colormap`` (cividis is colour-blind safe) in the given order.

    Registering the same label again with the same look is allowed; with another look it is an error, so a
    variant looks the same in every figure.
    """
    parent = style(base)
    cmap = mpl.colormaps[colormap]
    styles = []
    for position, variant in enumerate(labels):
        # the ends of cividis are very dark and very pale: keep to its middle 80%
        fraction = 0.1 + 0.8 * (position / max(len(labels) - 1, 1))
        color = mpl.colors.to_hex(cmap(fraction))
        new = Style(variant, family or parent.family, color, parent.dashes, parent.marker)
        old = _VARIANTS.get(variant) or _BY_LABEL.get(variant)
        if old is not None and old != new:
            raise ValueError(f"variant {variant!r} already has another style ({old}); give it another label")
        _VARIANTS[variant] = new
        styles.append(new)
    return styles


def register_variant(variant: str, base: str, color: str | None = None, dashes: str | None = None, marker: str | None = None,
                     family: str | None = None) -> Style:
    """One variant of ``base`` (e.g. "Dynamic ATMO"): the base's look with the given colour (an Okabe–Ito name),
    dash pattern (a :data:`DASHES` name) or marker changed."""
    parent = style(base)
    new = Style(variant, family or parent.family, OKABE_ITO[color] if color else parent.color,
                DASHES[dashes] if dashes else parent.dashes, marker or parent.marker)
    old = _VARIANTS.get(variant) or _BY_LABEL.get(variant)
    if old is not None and old != new:
        raise ValueError(f"variant {variant!r} already has another style ({old}); give it another label")
    _VARIANTS[variant] = new
    return new


def palette(labels) -> dict[str, str]:
    """label → colour, for seaborn's ``palette=``."""
    return {item: style(item).color for item in labels}


def dashes(labels) -> dict[str, str | tuple]:
    """label → dash pattern, for seaborn's ``dashes=``."""
    return {item: style(item).dashes for item in labels}


def markers(labels) -> dict[str, str]:
    """label → marker, for seaborn's ``markers=``."""
    return {item: style(item).marker for item in labels}
