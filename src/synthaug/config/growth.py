"""Growing a study in its run directory: more models, arms or seeds, every finished cell kept.

A run directory refuses a configuration that differs from the one it recorded, so that two
studies never mix. The exception is growth: a configuration whose ``study.models``,
``study.policies`` and ``study.seeds`` hold every recorded entry (in any order) and more,
everything else equal, resumes the study and trains only the new cells — e.g. ResNet-18 added to
a finished CNN study, a control arm added once a result asks for one, or seven seeds added to a
three-seed study whose CIs straddle zero. Removing an entry stays refused (its cells would linger
in the results), and so does any other change. The first seed stays first: where the data bring
no test split, it draws the test split of every cell.
"""

from __future__ import annotations

from typing import Any

# Lists under `study:` a study may grow by; each entry of them names its own classifier cells.
GROWABLE = ("models", "policies", "seeds")


def _describe(key: str, entry: Any) -> str:
    if key == "models" and isinstance(entry, dict):
        return f"model {entry.get('name', entry)}"
    if key == "policies" and isinstance(entry, list):
        return "arm " + (" + ".join(map(str, entry)) if entry else "none")
    if key == "seeds":
        return f"seed {entry}"
    return f"{key} entry {entry}"


def growth(recorded: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What ``new`` adds to ``recorded`` in the growable lists (one line per added entry).

    Where a growable list of ``new`` holds every entry of ``recorded``'s, that list of
    ``recorded`` is replaced by ``new``'s **in place**, so a later comparison of the two
    configurations sees only the other differences. A list that lost an entry is left as it
    was: the comparison then names it.
    """
    old_study, new_study = recorded.get("study"), new.get("study")
    if not isinstance(old_study, dict) or not isinstance(new_study, dict):
        return []
    added: list[str] = []
    for key in GROWABLE:
        before, after = old_study.get(key), new_study.get(key)
        if not isinstance(before, list) or not isinstance(after, list) or before == after:
            continue
        if key == "seeds" and before and after and before[0] != after[0]:
            continue  # left to the comparison: the first seed draws the test split where the data have none
        if all(entry in after for entry in before):
            added += [_describe(key, entry) for entry in after if entry not in before]
            old_study[key] = after
    return added
