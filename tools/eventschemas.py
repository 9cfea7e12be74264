"""The JSON Schemas of the events (docs/schemas/) and the compatibility checker (docs/events.md).

- `render()`: one JSON Schema (draft 2020-12) per (topic, event type, version): the envelope with
  its `data`, the data's structure from the catalog (shared/events/catalog.py: msgspec Structs on
  `aftersales.*`, pydantic models on `upstream.*`), `$id` = the `ce_dataschema` URI. Written by
  `aftersales docs`, checked by `aftersales docs --check` like the API documents.
- `docs/schemas/releases/<release>/`: the schemas as a release published them, committed and
  never regenerated (`aftersales docs --release R` takes a snapshot).
- `compatibility(old, new)`: what in `new` breaks a reader or a producer of `old` under the
  policy: a field removed, a type changed, a field newly required (or no longer required), an
  enum value removed (or added to a closed list), a constraint narrowed, a const or default changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from shared.events import CATALOG, EventSpec
from shared.events.cloudevents import CONTENT_TYPE, ce_type, dataschema, schema_path
from shared.events.envelope import Envelope
from shared.privacy import PERSONAL_KEYS
from tools.docfiles import stale_files, write_files

SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"
RELEASES = "releases"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
# Marks an enum whose list is documented as open: a new value is an additive change there.
OPEN_ENUM = "x-aftersales-open-enum"
# Marks a customer's personal value, sealed on the canonical topics (shared/keyring.py).
SEALED = "x-aftersales-sealed"
_REF = "#/$defs/{name}"
# Older versions still published and accepted, and until when (docs/events.md, "Compatibility
# policy"): (topic, event type, old version) -> the last day, ISO 8601. Their schema files say so.
DEPRECATIONS: dict[tuple[str, str, int], str] = {}


def _envelope_properties() -> tuple[dict[str, Any], list[str]]:
    found = msgspec.json.schema(Envelope, ref_template=_REF)
    envelope = found["$defs"]["Envelope"]
    return envelope["properties"], list(envelope["required"])


def _data_schema(spec: EventSpec) -> tuple[str, dict[str, Any]]:
    """(the data's definition name, every definition it needs)."""
    if spec.upstream:
        found = spec.model.model_json_schema(ref_template=_REF.replace("{name}", "{model}"))
        defs = found.pop("$defs", {})
        name = spec.model.__name__
        return name, {**defs, name: found}
    found = msgspec.json.schema(spec.model, ref_template=_REF)
    return found["$ref"].rsplit("/", 1)[-1], found["$defs"]


def _holds_text(prop: dict[str, Any]) -> bool:
    """A string, a string or null, or a list of strings."""
    kinds = prop.get("type")
    if kinds == "string" or (isinstance(kinds, list) and "string" in kinds):
        return True
    if kinds == "array":
        return _holds_text(prop.get("items") or {})
    return any(_holds_text(option) for option in prop.get("anyOf", ()))


def _mark_sealed(defs: dict[str, Any]) -> dict[str, Any]:
    """On the canonical topics: each string property that is a customer's personal value carries
    `x-aftersales-sealed` (docs/events.md, "Sealed personal values"): in an object that belongs to
    a customer, it is sent as `sealed:v1:…` and opened with the customer's key."""
    marked = {}
    for name, definition in defs.items():
        properties = definition.get("properties")
        if isinstance(properties, dict):
            definition = {**definition, "properties": {
                key: ({**prop, SEALED: True} if key.lower() in PERSONAL_KEYS and _holds_text(prop) else prop)
                for key, prop in properties.items()}}
        marked[name] = definition
    return marked


def schema_for(spec: EventSpec, version: int) -> dict[str, Any]:
    """The JSON Schema of one event type's envelope at the version this code publishes."""
    properties, required = _envelope_properties()
    data_name, defs = _data_schema(spec)
    if not spec.upstream:
        defs = _mark_sealed(defs)
    summary = (spec.model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    properties = {
        **properties,
        "event_type": {"const": spec.event_type, "description": "the event's type; also the `event_type` header"},
        "schema_version": {"type": "integer", "const": version, **({"default": 1} if version == 1 else {}),
                           "description": "the version of this structure (a missing one is 1)"},
        "key": {**properties["key"], "description": f"the record key and `ce_subject`: {spec.key_doc}"},
        "data": {"$ref": _REF.format(name=data_name)},
    }
    properties["event_id"] = {**properties["event_id"], "description": "unique; `ce_id`; consumers de-duplicate on it"}
    properties["occurred_at"] = {**properties["occurred_at"],
                                 "description": "when it happened in the world, with its offset; `ce_time`"}
    properties["source"] = {**properties["source"], "description": "the producing service or upstream producer"}
    properties["correlation_id"] = {**properties["correlation_id"],
                                    "description": "carried unchanged along a chain of events; a missing one is event_id"}
    properties["causation_id"] = {**properties["causation_id"],
                                  "description": "the event_id of the event that caused this one"}
    return {
        "$schema": DRAFT,
        "$id": dataschema(spec.topic, spec.event_type, version),
        "title": f"{spec.event_type} v{version} on {spec.topic}",
        "description": f"The envelope of {spec.event_type} on {spec.topic}, keyed by {spec.key_doc}, with its data."
                       + (f" {summary}" if summary else "") + " Unknown fields are ignored by readers.",
        "type": "object",
        "properties": properties,
        "required": sorted({*required, "data"}),
        "x-aftersales": {"topic": spec.topic, "event_type": spec.event_type, "schema_version": version,
                         "key": spec.key_doc, "ce_type": ce_type(spec.topic, spec.event_type, version),
                         "content_type": CONTENT_TYPE},
        "$defs": dict(sorted(defs.items())),
    }


def dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def releases(directory: Path = SCHEMAS_DIR) -> list[str]:
    """The release snapshots under docs/schemas/releases/, oldest first (by version number)."""
    root = directory / RELEASES
    names = [p.name for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    return sorted(names, key=lambda name: tuple(int(part) for part in name.split(".")))


def _frozen(directory: Path, relative: str) -> str:
    """An older version's schema: as the newest release that published it has it."""
    for release in reversed(releases(directory)):
        path = directory / RELEASES / release / relative
        if path.is_file():
            return path.read_text()
    raise FileNotFoundError(f"{relative}: an older version this code still accepts, but no release under "
                            f"{directory / RELEASES} holds its schema")


def render(directory: Path = SCHEMAS_DIR) -> dict[str, str]:
    """Path under docs/schemas/ -> content of every current schema: the version this code
    publishes from the catalog, each older version it still accepts from the release that published it."""
    files: dict[str, str] = {}
    for (topic, event_type), spec in sorted(CATALOG.items()):
        files[schema_path(topic, event_type, spec.max_version)] = dump(schema_for(spec, spec.max_version))
        for version in range(1, spec.max_version):
            frozen = _frozen(directory, schema_path(topic, event_type, version))
            until = DEPRECATIONS.get((topic, event_type, version))
            if until is not None:
                schema = json.loads(frozen)
                schema.setdefault("x-aftersales", {}).update(deprecated=True, published_until=until,
                                                             replaced_by=spec.max_version)
                frozen = dump(schema)
            files[schema_path(topic, event_type, version)] = frozen
    return files


def _current_files(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*.json")
            if p.relative_to(directory).parts[0] != RELEASES} if directory.is_dir() else set()


def write(directory: Path = SCHEMAS_DIR) -> list[Path]:
    """Write the schemas (and remove one no catalog entry gives any more); return what changed."""
    wanted = render(directory)
    changed = write_files(directory, wanted)
    for relative in sorted(_current_files(directory) - set(wanted)):
        (directory / relative).unlink()
        changed.append(directory / relative)
    return changed


def stale(directory: Path = SCHEMAS_DIR) -> list[str]:
    wanted = render(directory)
    found = [f"schemas/{r}" for r in stale_files(directory, wanted)]
    return found + [f"schemas/{r} (no catalog entry gives it)" for r in sorted(_current_files(directory) - set(wanted))]


def snapshot(release: str, directory: Path = SCHEMAS_DIR) -> Path:
    """Freeze the current schemas as `release` (refuses to overwrite one)."""
    target = directory / RELEASES / release
    if target.exists():
        raise FileExistsError(f"{target} exists: a release's schemas are never rewritten")
    for relative, content in render(directory).items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return target


def load_release(release: str, directory: Path = SCHEMAS_DIR) -> dict[str, dict[str, Any]]:
    root = directory / RELEASES / release
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))}


# -- compatibility -----------------------------------------------------------------------------

_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null",
               list: "array", dict: "object"}
# constraints a new version may only widen: (keyword, True when a larger value narrows)
_BOUNDS = (("maxLength", False), ("maximum", False), ("exclusiveMaximum", False), ("maxItems", False),
           ("minLength", True), ("minimum", True), ("exclusiveMinimum", True), ("minItems", True))


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 50:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        seen += 1
    return node


def _variants(node: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    node = _resolve(node, root)
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives:
        return [v for alt in alternatives for v in _variants(alt, root)]
    return [node]


def _kind(node: dict[str, Any]) -> str:
    if "const" in node:
        return _JSON_TYPES[type(node["const"])]
    if "enum" in node:
        kinds = {_JSON_TYPES[type(v)] for v in node["enum"]}
        return "/".join(sorted(kinds))
    kind = node.get("type")
    if isinstance(kind, list):
        return "/".join(sorted(kind))
    if kind:
        return str(kind)
    return "object" if "properties" in node else "any"


def _kinds(variants: list[dict[str, Any]]) -> str:
    return " | ".join(sorted({_kind(v) for v in variants}))


def compatibility(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every change from `old` to `new` the policy forbids within a schema_version (empty: compatible)."""
    problems: list[str] = []
    _compare(old, new, old, new, "", problems, set())
    return problems


def _compare(old: dict[str, Any], new: dict[str, Any], old_root: dict[str, Any], new_root: dict[str, Any],
             path: str, problems: list[str], seen: set[tuple[int, int]]) -> None:
    where = path or "(the envelope)"
    if not isinstance(old, dict) or not isinstance(new, dict):  # a boolean schema: anything, or nothing
        if old != new:
            problems.append(f"{where}: changed from {json.dumps(old)[:80]} to {json.dumps(new)[:80]}")
        return
    olds, news = _variants(old, old_root), _variants(new, new_root)
    if _kinds(olds) != _kinds(news):
        problems.append(f"{where}: type changed from {_kinds(olds)} to {_kinds(news)}")
        return
    by_kind_new: dict[str, list[dict[str, Any]]] = {}
    for n in news:
        by_kind_new.setdefault(_kind(n), []).append(n)
    taken: dict[str, int] = {}
    for o in olds:
        kind = _kind(o)
        index = taken.get(kind, 0)
        taken[kind] = index + 1
        candidates = by_kind_new.get(kind, [])
        if index >= len(candidates):
            problems.append(f"{where}: a {kind} alternative was removed")
            continue
        n = candidates[index]
        if (id(o), id(n)) in seen:
            continue
        seen.add((id(o), id(n)))
        _compare_node(o, n, old_root, new_root, path, problems, seen)


def _compare_node(o: dict[str, Any], n: dict[str, Any], old_root: dict[str, Any], new_root: dict[str, Any],
                  path: str, problems: list[str], seen: set[tuple[int, int]]) -> None:
    where = path or "(the envelope)"
    if "const" in o or "const" in n:
        if o.get("const") != n.get("const"):
            problems.append(f"{where}: const changed from {o.get('const')!r} to {n.get('const')!r}")
    if "enum" in o or "enum" in n:
        if "enum" not in n:
            problems.append(f"{where}: no longer a closed list of values")
        elif "enum" not in o:
            problems.append(f"{where}: narrowed to the values {n['enum']}")
        else:
            removed = [v for v in o["enum"] if v not in n["enum"]]
            added = [v for v in n["enum"] if v not in o["enum"]]
            if removed:
                problems.append(f"{where}: enum value(s) removed: {', '.join(map(str, removed))}")
            if added and not (o.get(OPEN_ENUM) and n.get(OPEN_ENUM)):
                problems.append(f"{where}: enum value(s) added to a closed list: {', '.join(map(str, added))}")
    if o.get("format") != n.get("format"):
        problems.append(f"{where}: format changed from {o.get('format')} to {n.get('format')}")
    if o.get("pattern") != n.get("pattern"):
        problems.append(f"{where}: pattern changed from {o.get('pattern')!r} to {n.get('pattern')!r}")
    for keyword, larger_narrows in _BOUNDS:
        before, after = o.get(keyword), n.get(keyword)
        if after is None or before == after:
            continue
        if before is None or (after > before if larger_narrows else after < before):
            problems.append(f"{where}: {keyword} narrowed from {before} to {after}")
    if "default" in o and o.get("default") != n.get("default"):
        problems.append(f"{where}: default changed from {o['default']!r} to {n.get('default')!r}")
    if "properties" in o or "properties" in n:
        old_props, new_props = o.get("properties", {}), n.get("properties", {})
        old_required, new_required = set(o.get("required", [])), set(n.get("required", []))
        for name, schema in old_props.items():
            inner = f"{path}.{name}" if path else name
            if name not in new_props:
                problems.append(f"{inner}: field removed (or renamed)")
                continue
            _compare(schema, new_props[name], old_root, new_root, inner, problems, seen)
        for name in sorted(new_required - old_required):
            inner = f"{path}.{name}" if path else name
            problems.append(f"{inner}: newly required" + ("" if name in old_props else " (a new field must be optional)"))
        for name in sorted(old_required - new_required):
            inner = f"{path}.{name}" if path else name
            if name in new_props:
                problems.append(f"{inner}: no longer required (a reader relies on it)")
    if isinstance(o.get("additionalProperties"), dict) and isinstance(n.get("additionalProperties"), dict):
        _compare(o["additionalProperties"], n["additionalProperties"], old_root, new_root, f"{path}.*", problems, seen)
    elif o.get("additionalProperties") is not False and n.get("additionalProperties") is False:
        problems.append(f"{where}: unknown fields are refused now")
    if "items" in o and "items" in n:
        _compare(o["items"], n["items"], old_root, new_root, f"{path}[]", problems, seen)
    old_tuple, new_tuple = o.get("prefixItems", []), n.get("prefixItems", [])
    if len(old_tuple) != len(new_tuple):
        problems.append(f"{where}: a tuple of {len(old_tuple)} became one of {len(new_tuple)}")
    for index, (before, after) in enumerate(zip(old_tuple, new_tuple, strict=False)):
        _compare(before, after, old_root, new_root, f"{path}[{index}]", problems, seen)


def check_release(release: str, directory: Path = SCHEMAS_DIR) -> dict[str, list[str]]:
    """The release's schemas against what the code gives now: path -> the breaking changes."""
    current = {relative: json.loads(content) for relative, content in render(directory).items()}
    found: dict[str, list[str]] = {}
    for relative, old in load_release(release, directory).items():
        if relative not in current:
            found[relative] = ["the event type's version is no longer published or accepted"]
            continue
        problems = compatibility(old, current[relative])
        if problems:
            found[relative] = problems
    return found
