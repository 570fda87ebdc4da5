"""DCAT-AP 3 JSON-LD for the catalog and each dataset, plus the gateway's documented extensions.

Extensions live in the `pdg:` namespace (https://pdg.example/ns#), documented in docs/open-data.md:
pdg:openType and pdg:shareType (unconditional | conditional | closed), pdg:grade (G1..G4 after
GB/T 43697-2024), pdg:qualityScore (0..100 from the latest version's quality report), pdg:version.
"""

from __future__ import annotations

from typing import Any

from catalog.models import Dataset

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "pdg": "https://pdg.example/ns#",
    "dcat:keyword": {"@container": "@set"},
}
FREQUENCY = "http://publications.europa.eu/resource/authority/frequency/"
_FREQ = {
    "realtime": "CONT",
    "daily": "DAILY",
    "weekly": "WEEKLY",
    "monthly": "MONTHLY",
    "quarterly": "QUARTERLY",
    "yearly": "ANNUAL",
    "irregular": "IRREG",
}
_MEDIA = {"csv": "text/csv", "ndjson": "application/x-ndjson", "parquet": "application/vnd.apache.parquet"}


def _lang(zh: str, en: str | None) -> list[dict[str, str]]:
    out = [{"@value": zh, "@language": "zh"}]
    if en:
        out.append({"@value": en, "@language": "en"})
    return out


def dataset_node(ds: Dataset, base_url: str) -> dict[str, Any]:
    """One dcat:Dataset node."""
    api = f"{base_url}/api/v1"
    node: dict[str, Any] = {
        "@id": f"{api}/catalog/datasets/{ds.code}",
        "@type": "dcat:Dataset",
        "dct:identifier": ds.code,
        "dct:title": _lang(ds.title, ds.title_en),
        "dct:description": _lang(ds.description, ds.description_en),
        "dcat:keyword": ds.keywords,
        "dcat:theme": {"@id": f"https://pdg.example/category/{ds.category}"},
        "dct:publisher": {"@type": "foaf:Agent", "foaf:name": ds.department, "dct:identifier": ds.owner_org},
        "dct:accrualPeriodicity": {"@id": FREQUENCY + _FREQ.get(ds.update_cycle, "IRREG")},
        "dct:license": ds.licence,
        "dct:issued": {"@value": ds.created_at.isoformat(), "@type": "xsd:dateTime"},
        "dct:modified": {"@value": ds.updated_at.isoformat(), "@type": "xsd:dateTime"},
        "pdg:openType": ds.open_type,
        "pdg:shareType": ds.share_type,
        "pdg:grade": ds.grade,
    }
    if ds.temporal_coverage:
        node["dct:temporal"] = ds.temporal_coverage
    if ds.spatial_coverage:
        node["dct:spatial"] = ds.spatial_coverage
    if ds.contact:
        node["dcat:contactPoint"] = {"@type": "vcard:Kind", "vcard:fn": ds.contact}
    if ds.quality_score is not None:
        node["pdg:qualityScore"] = ds.quality_score
    if ds.current_version is not None:
        node["pdg:version"] = ds.current_version
    if ds.open_type == "unconditional" and ds.current_version is not None:
        node["dcat:distribution"] = [
            {
                "@type": "dcat:Distribution",
                "dct:title": f"{ds.title} ({fmt.upper()})",
                "dcat:downloadURL": {"@id": f"{api}/open/datasets/{ds.code}/download.{fmt}"},
                "dcat:accessURL": {"@id": f"{api}/open/datasets/{ds.code}/rows"},
                "dcat:mediaType": _MEDIA[fmt],
                "dct:license": ds.licence,
            }
            for fmt in ("csv", "ndjson", "parquet")
        ]
    else:
        node["dcat:landingPage"] = {"@id": f"{base_url}/datasets/{ds.code}"}
        node["pdg:access"] = (
            "apply through the sandbox or sharing request" if ds.open_type == "conditional" else "not opened"
        )
    return node


def catalog_document(datasets: list[Dataset], base_url: str) -> dict[str, Any]:
    """The whole (visible) catalog as one dcat:Catalog."""
    return {
        "@context": CONTEXT,
        "@id": f"{base_url}/api/v1/catalog/dcat",
        "@type": "dcat:Catalog",
        "dct:title": _lang("公共数据开放目录", "Public data catalog"),
        "dct:publisher": {"@type": "foaf:Agent", "foaf:name": "Public Data Gateway"},
        "dcat:dataset": [dataset_node(d, base_url) for d in datasets],
    }


def dataset_document(ds: Dataset, base_url: str) -> dict[str, Any]:
    return {"@context": CONTEXT, **dataset_node(ds, base_url)}


def dictionary(ds: Dataset) -> dict[str, Any]:
    """The data dictionary: every field with its label, type, tag and what the public sees of it."""
    from policies import vocabulary

    out = []
    for f in ds.schema_def["fields"]:
        public = vocabulary.masking_for(f["tag"], "public").method
        out.append({**f, "public_masking": public, "in_open_edition": public != "suppress"})
    return {"dataset": ds.code, "grade": ds.grade, "key": ds.schema_def.get("key"), "fields": out}
