"""The canonical 12-lead layout every store uses, and matching of lead names onto it.

A store always has the 12 canonical leads in the same order; a record that lacks some of them
carries a lead mask, so models never mistake an absent lead for a flat one.
"""

from __future__ import annotations

from collections.abc import Sequence

CANONICAL_LEADS: tuple[str, ...] = (
    "I",
    "II",
    "III",
    "aVR",
    "aVL",
    "aVF",
    "V1",
    "V2",
    "V3",
    "V4",
    "V5",
    "V6",
)
N_LEADS = len(CANONICAL_LEADS)

# Other spellings of the same leads seen in public collections: Roman-numeral "D" names (e.g. the
# Brazilian CODE exports) and the modified limb leads of Holter-style WFDB records (MLII is lead II
# with torso electrodes; it is the closest canonical lead, and the record says which it was).
_ALIASES = {"DI": "I", "DII": "II", "DIII": "III", "MLI": "I", "MLII": "II", "MLIII": "III"}
_BY_FOLDED_NAME = {name.casefold(): i for i, name in enumerate(CANONICAL_LEADS)}
_BY_FOLDED_NAME.update({alias.casefold(): _BY_FOLDED_NAME[name.casefold()] for alias, name in _ALIASES.items()})


def lead_index(name: str) -> int | None:
    """Canonical index of a lead name (case-insensitive, surrounding spaces ignored), or None."""
    return _BY_FOLDED_NAME.get(name.strip().casefold())


# Named subsets accepted wherever a lead list is (``--leads limb``).
NAMED_LEAD_SETS = {"limb": "I,II,III,aVR,aVL,aVF", "precordial": "V1,V2,V3,V4,V5,V6"}


def parse_lead_list(text: str | Sequence[str]) -> list[int]:
    """Canonical indices of a lead list (``"I,II,V1"``, ``"limb"`` or a sequence); raises on unknown names."""
    if isinstance(text, str) and text.strip() in NAMED_LEAD_SETS:
        text = NAMED_LEAD_SETS[text.strip()]
    names = [n for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    indices = []
    for name in names:
        index = lead_index(name)
        if index is None:
            raise ValueError(f"unknown lead name {name!r}; known leads: {', '.join(CANONICAL_LEADS)}")
        if index in indices:
            raise ValueError(f"lead {name!r} is listed twice")
        indices.append(index)
    if not indices:
        raise ValueError("the lead list is empty")
    return indices
