"""The project's own documentation: docs/ generated blocks match the code, the methods document
covers every metric family and every formula docstring, links resolve, nothing points outside
the repository, and the methods PDF has working contents links and embedded fonts."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

import venue_risk.metrics
from venue_risk.docs import BLOCK, render_blocks, stale_blocks
from venue_risk.methods import FAMILIES, _md, module_parts, parameters, public_functions, slug

PROJECT = Path(__file__).resolve().parents[2]
DOCS = PROJECT / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _squash(text: str) -> str:
    return "".join(text.split())


# -- PDF checks, shared with the daily report's tests ---------------------------------------------

def unembedded_fonts(pdf: Path) -> list[str]:
    """Fonts used on any page whose descriptor carries no embedded font file."""
    missing = set()
    for page in PdfReader(pdf).pages:
        fonts = (page.get("/Resources") or {}).get("/Font") or {}
        for font in fonts.values():
            font = font.get_object()
            desc = font["/DescendantFonts"][0].get_object() if "/DescendantFonts" in font else font
            fd = desc.get("/FontDescriptor")
            if fd is None or not any(k in fd.get_object() for k in ("/FontFile", "/FontFile2", "/FontFile3")):
                missing.add(str(font.get("/BaseFont")))
    return sorted(missing)


def internal_links(pdf: Path, page_numbers: range) -> list[tuple[str, int | None]]:
    """(destination name, target page index or None when it does not resolve) of every internal
    link annotation on the given pages."""
    reader = PdfReader(pdf)
    named = reader.named_destinations
    out = []
    for i in page_numbers:
        for annot in reader.pages[i].get("/Annots") or []:
            annot = annot.get_object()
            dest = annot.get("/Dest")
            if dest is None and "/A" in annot and annot["/A"].get("/S") == "/GoTo":
                dest = annot["/A"].get("/D")
            if isinstance(dest, str):
                target = named.get(dest)
                out.append((dest, reader.get_destination_page_number(target) if target is not None else None))
    return out


# -- generated blocks ----------------------------------------------------------------------------

def test_generated_blocks_match_the_code():
    stale = stale_blocks(sorted(DOCS.glob("*.md")))
    assert stale == [], f"run `.venv/bin/venue-risk docs`: {stale}"


def test_the_check_finds_a_stale_block(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("intro\n<!-- generated:settings -->\n| old | table |\n<!-- end generated:settings -->\nend\n")
    assert stale_blocks([doc]) == [f"{doc}: settings"]
    fresh = render_blocks(doc.read_text())
    assert "VENUE_RISK_SOURCE" in fresh and fresh.startswith("intro\n") and fresh.endswith("end\n")
    with pytest.raises(ValueError, match="unknown generated block 'nope'"):
        render_blocks("<!-- generated:nope -->\n<!-- end generated:nope -->")


# -- methods coverage ----------------------------------------------------------------------------

def test_every_metric_module_is_a_family():
    modules = {f"venue_risk.metrics.{m.name}" for m in pkgutil.iter_modules(venue_risk.metrics.__path__)}
    modules -= {"venue_risk.metrics.frames"}  # shared frame helpers, no metric
    in_families = {m for f in FAMILIES for m in f.modules}
    assert modules <= in_families, sorted(modules - in_families)
    assert len({f.anchor for f in FAMILIES}) == len(FAMILIES)


def test_methods_document_covers_every_family_and_formula():
    text = (DOCS / "methods.md").read_text()
    for family in FAMILIES:
        assert f"## {family.number} {family.title}\n" in text
        assert f"- [{family.number} {family.title}](#{family.anchor})" in text  # contents
        section = text.split(f"## {family.number} {family.title}\n", 1)[1].split("\n## ", 1)[0]
        for heading in ("### What it measures", "### Method", "### Known limits", "### Parameters",
                        "### Formulas by function"):
            assert heading in section, (family.title, heading)
        modules = [importlib.import_module(m) for m in family.modules]
        assert any(module_parts(m)[2] for m in modules), f"{family.title}: no 'Known limits:' paragraph"
        for module in modules:
            what, method, limits = module_parts(module)
            for part in (what, method, limits):
                assert _md(part) in section
            for name, func in public_functions(module):
                assert _md(inspect.getdoc(func)) in section, f"{module.__name__}.{name}"
            for name, value, meaning in parameters(module):
                assert f"`{module.__name__.rsplit('.', 1)[-1]}.{name}`" in section


def test_parameters_are_the_documented_constants():
    from venue_risk.metrics import slippage

    params = {name: (value, meaning) for name, value, meaning in parameters(slippage)}
    assert params["FILL_QTY_RTOL"][0] == "1e-9"
    assert "filled_qty" in params["FILL_QTY_RTOL"][1]
    assert all(not name.startswith("_") for name in params)


def test_dataset_contract_lists_every_dataset_and_column():
    from venue_risk.schema import DATASETS

    text = (DOCS / "dataset-contract.md").read_text()
    for name, ds in DATASETS.items():
        section = text.split(f"### `{name}`\n", 1)[1].split("\n### ", 1)[0]
        for col in ds.schema:
            assert f"| `{col}` |" in section, (name, col)


# -- links and self-containment ------------------------------------------------------------------

def _headings(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(m.group(1).replace("`", "")) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_every_relative_link_in_the_docs_resolves():
    checked = 0
    for doc in [PROJECT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in LINK.findall(re.sub(r"```.*?```", "", doc.read_text(), flags=re.S)):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            file, _, anchor = target.partition("#")
            path = (doc.parent / file).resolve() if file else doc
            assert path.exists(), f"{doc.name}: link to missing {target}"
            if anchor:
                assert anchor in _headings(path), f"{doc.name}: no heading #{anchor} in {path.name}"
            checked += 1
    assert checked >= 20


def test_nothing_in_the_repository_points_outside_it():
    files = subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True,
                           check=True).stdout.split()
    offenders = [f for f in files if (PROJECT / f).is_file() and f != "tests/unit/test_docs.py"
                 and "../shared" in (PROJECT / f).read_text(errors="ignore")]
    assert offenders == []


# -- the methods PDF -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def methods_pdf(tmp_path_factory):
    from venue_risk.report import render_methods

    return render_methods(tmp_path_factory.mktemp("methods"), "9.9.9+gtest")


def test_methods_pdf_contents_links_resolve_to_their_sections(methods_pdf):
    reader = PdfReader(methods_pdf["pdf"])
    links = internal_links(methods_pdf["pdf"], range(min(3, len(reader.pages))))
    by_anchor = dict(links)
    assert {f.anchor for f in FAMILIES} <= set(by_anchor), "a family has no contents link"
    for family in FAMILIES:
        page = by_anchor[family.anchor]
        assert page is not None, f"contents link to {family.anchor} does not resolve"
        assert _squash(f"{family.number} {family.title}") in _squash(reader.pages[page].extract_text())


def test_methods_pdf_embeds_its_fonts_and_names_its_version(methods_pdf):
    assert unembedded_fonts(methods_pdf["pdf"]) == []
    reader = PdfReader(methods_pdf["pdf"])
    first = reader.pages[0].extract_text()
    assert "9.9.9+gtest" in first and f"Page 1 of {len(reader.pages)}" in first
    assert methods_pdf["pdf"].name == "venue-risk-methods-9.9.9+gtest.pdf"
    html = methods_pdf["html"].read_text()
    assert all(f'id="{f.anchor}"' in html for f in FAMILIES)
    # every anchor once (each family's repeated headings numbered as GitHub does: -1, -2, ...)
    ids = re.findall(r' id="([^"]+)"', html)
    assert len(ids) == len(set(ids)) and "what-it-measures-1" in ids


def test_methods_files_are_rendered_once_per_text(methods_pdf):
    from venue_risk.report import render_methods

    mtime = methods_pdf["pdf"].stat().st_mtime_ns
    again = render_methods(methods_pdf["pdf"].parent, "9.9.9+gtest")
    assert again == methods_pdf and methods_pdf["pdf"].stat().st_mtime_ns == mtime
    digest = methods_pdf["pdf"].with_suffix(".sha256")
    digest.write_text("0" * 64 + "\n")  # the text changed under the same version: rendered again
    render_methods(methods_pdf["pdf"].parent, "9.9.9+gtest")
    assert methods_pdf["pdf"].stat().st_mtime_ns != mtime


def test_block_markers_are_well_formed():
    for doc in sorted(DOCS.glob("*.md")):
        text = doc.read_text()
        opened = re.findall(r"(?<!`)<!-- generated:([\w-]+) -->", text)  # (not one quoted as code)
        assert len(opened) == len(BLOCK.findall(text)), f"{doc.name}: a generated block is not closed"
