"""Checked repair of PIR programs (``inference.json``) that paddle2onnx 2.1.0 cannot parse.

Root cause of "det fails with paddle 3.3.1" (``the 0th elementwise MUST be ir::FloatAttribute``,
``pir_parser.cc:814``): paddle 3.3.1's ``translate_to_pir`` writes float-list attributes such as
``nearest_interp.scale`` as arrays of float64 (``0.a_f64``) where paddle 3.2.2 wrote float32
(``0.a_f32``); paddle2onnx 2.1.0 reads float lists only as float32. ONNX stores float attributes
as float32 anyway, so narrowing them loses nothing the ONNX graph could have kept.

The repair is applied only after an export of the untouched program failed, and what it did is
reported; the converter still checks the resulting graph against native Paddle.

Pure JSON, no paddle import: it runs inside the export child but is testable anywhere.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

_ARRAY = "0.a_array"
_F64 = "0.a_f64"
_F32 = "0.a_f32"


def narrow_f64_array_attributes(program: Any) -> Counter[str]:
    """Turn float64 elements of array attributes into float32, in place.

    Returns how many arrays were changed per ``<op>.<attribute>``.
    """
    changed: Counter[str] = Counter()

    def fix_attribute(attr_type: Any) -> bool:
        if not (isinstance(attr_type, dict) and attr_type.get("#") == _ARRAY):
            return False
        elements = attr_type.get("D")
        if not isinstance(elements, list):
            return False
        hit = False
        for element in elements:
            if isinstance(element, dict) and element.get("#") == _F64:
                element["#"] = _F32
                hit = True
        return hit

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            tag = node.get("#")
            op_name = tag.split(".", 1)[-1] if isinstance(tag, str) else None  # "1.nearest_interp"
            for key in ("A", "OA"):
                attributes = node.get(key)
                if op_name and isinstance(attributes, list):
                    for attribute in attributes:
                        if isinstance(attribute, dict) and fix_attribute(attribute.get("AT")):
                            changed[f"{op_name}.{attribute.get('N', '?')}"] += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(program)
    return changed


def repair_pir_json(source: Path, target: Path) -> list[str]:
    """Write a repaired copy of ``source`` to ``target`` if anything needs repair.

    Returns the repairs applied (empty: nothing to do, ``target`` not written).
    """
    program = json.loads(source.read_text(encoding="utf-8"))
    changed = narrow_f64_array_attributes(program)
    if not changed:
        return []
    target.write_text(json.dumps(program, separators=(",", ":")), encoding="utf-8")
    where = ", ".join(f"{name} x{count}" for name, count in sorted(changed.items()))
    return [f"pir-f64-array-attrs: float64 array attributes narrowed to float32 ({where})"]
