"""The junit format: one test case per gate threshold, so any CI shows which held and which did not."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET


def render_junit(doc: dict[str, Any]) -> str:
    checks = (doc.get("gate") or {}).get("checks", [])
    suite = ET.Element(
        "testsuite",
        name="privaudit",
        tests=str(len(checks)),
        failures=str(sum(not c["passed"] for c in checks)),
        errors="0",
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"privaudit.{doc['kind']}", name=c["metric"])
        if not c["passed"]:
            detail = f" ({c['detail']})" if c.get("detail") else ""
            ET.SubElement(case, "failure", message=f"{c['metric']} = {c['value']:.4g} exceeds {c['limit']:g}{detail}")
    ET.SubElement(suite, "system-out").text = doc["headline"]["text"]
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
