"""A class of imported result sets, for the tests of tables that scale and the benchmark of a class's site.

Copies of one set, figures varied, marked imported: made in scratch folders only, never in the course's
``results/`` (they are no measurement of any machine).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

#: The figures of a measurement that scale with the machine's speed (ticks, and their nanoseconds).
SCALED = ("min", "median", "p90", "p99", "max", "mean", "value", "min_ns", "median_ns")


def factor(index: int) -> float:
    """Student ``index``'s machine: from 0.70 to about 1.6 times the copied one's figures, never in order."""
    return 0.7 + ((index * 37) % 60) * 0.015


def import_class(results: Path, source: str, count: int, prefix: str = "student") -> list[str]:
    """``count`` sets made from ``results/source``, each marked imported as ``invoke results.import`` marks one.

    Student ``i`` has the source's figures times :func:`factor` (i); its TSC rate is the source's. Returns the
    new sets' names.
    """
    names = []
    for index in range(1, count + 1):
        name = f"{prefix}-{index:02d}"
        target = results / name
        shutil.copytree(results / source, target)
        scale = factor(index)
        for file in target.glob("*.json"):
            data = json.loads(file.read_text())
            if file.name == "set.json":
                data["label"] = f"Student {index:02d}"
                data["imported"] = {"at": "2026-12-01T00:00:00+00:00", "archive": f"{name}.tar.gz"}
                data.pop("guest", None)
            else:
                for measurement in data.get("measurements", {}).values():
                    for field in SCALED:
                        if isinstance(measurement.get(field), (int, float)) and not isinstance(
                            measurement[field], bool
                        ):
                            measurement[field] = round(measurement[field] * scale, 3)
            file.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        names.append(name)
    return names
