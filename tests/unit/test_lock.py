"""The lock files (requirements/*.txt, written by `make lock`) are current with pyproject.toml.

runtime.txt (the image), tools.txt (runtime + the tools extra) and dev.txt (everything `make setup`
installs) must pin every pyproject requirement at its version, and nothing else than what those
requirements need: the closure is walked through the installed packages' metadata (the venv is
built from dev.txt), so a dependency added, dropped or moved in pyproject.toml without `make lock`
fails here."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCKS = {"runtime": (), "tools": ("tools",), "dev": ("dev",)}
TOOLS_ONLY = {"aiosmtpd", "faststream", "py-spy"}


def parse_lock(text: str) -> dict[str, str]:
    """{package: version} for the lines that apply on this platform; every line must carry hashes."""
    logical = re.sub(r"\\\n\s*", " ", text)
    pins: dict[str, str] = {}
    for line in logical.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, hashes = line.partition(" --hash=")
        assert hashes, f"no hash for {spec!r}"
        requirement = Requirement(spec.strip())
        [pin] = list(requirement.specifier)
        assert pin.operator == "==", f"{spec!r} is not pinned"
        if requirement.marker is None or requirement.marker.evaluate():
            pins[canonicalize_name(requirement.name)] = pin.version
    return pins


def roots(extras: tuple[str, ...]) -> list[Requirement]:
    """pyproject.toml's requirements for the project and the given extras (self-references expanded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = canonicalize_name(project["name"])
    pending, seen = list(extras), set()
    texts = list(project["dependencies"])
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == name:
                pending.extend(requirement.extras)
            else:
                texts.append(text)
    return [Requirement(text) for text in texts]


def lock_problems(pins: dict[str, str], extras: tuple[str, ...]) -> list[str]:
    """What makes `pins` not the lock of pyproject.toml's requirements for `extras` (empty when current)."""
    problems: list[str] = []
    for requirement in roots(extras):
        name = canonicalize_name(requirement.name)
        [pin] = list(requirement.specifier)
        if pin.operator != "==":
            problems.append(f"pyproject.toml does not pin {requirement}")
        elif pins.get(name) != pin.version:
            problems.append(f"pyproject.toml pins {name}=={pin.version}, the lock {pins.get(name)}")

    # The closure through the installed metadata: every package the requirements need, with the
    # extras asked for it, each marker evaluated on this platform.
    environment = default_environment()
    needed: dict[str, set[str]] = {}
    pending = [(requirement, "") for requirement in roots(extras)]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({**environment, "extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        asked = set(requirement.extras)
        if name in needed and asked <= needed[name]:
            continue
        needed.setdefault(name, set()).update(asked)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name} is needed but not installed (run `make setup`)")
            continue
        if name in pins and distribution.version != pins[name]:
            problems.append(f"{name} {distribution.version} is installed, the lock pins {pins[name]}")
        for text in distribution.requires or []:
            for wanted in ("", *sorted(needed[name])):
                pending.append((Requirement(text), wanted))
    missing = sorted(set(needed) - set(pins))
    stale = sorted(set(pins) - set(needed))
    problems += [f"{name} is needed but not in the lock" for name in missing]
    problems += [f"{name}=={pins[name]} is locked but nothing needs it" for name in stale]
    return problems


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_the_lock_is_current_with_pyproject(lock: str) -> None:
    pins = parse_lock((ROOT / "requirements" / f"{lock}.txt").read_text())
    assert not lock_problems(pins, LOCKS[lock]), "run `make lock`: " + "; ".join(lock_problems(pins, LOCKS[lock]))


def test_the_locks_agree_and_the_image_lock_has_no_tools() -> None:
    runtime, tools, dev = (parse_lock((ROOT / "requirements" / f"{n}.txt").read_text())
                           for n in ("runtime", "tools", "dev"))
    assert runtime.items() <= tools.items() <= dev.items()
    assert TOOLS_ONLY <= set(tools) and not TOOLS_ONLY & set(runtime), "the tools extra stays out of the image"


def test_a_doctored_lock_is_caught() -> None:
    pins = parse_lock((ROOT / "requirements" / "runtime.txt").read_text())
    assert not lock_problems(pins, ())
    dropped = {k: v for k, v in pins.items() if k != "anyio"}  # a transitive dependency (fastapi, httpx)
    assert "anyio is needed but not in the lock" in lock_problems(dropped, ())
    moved = {**pins, "fastapi": "0.1.0"}
    assert any(p.startswith("pyproject.toml pins fastapi==") for p in lock_problems(moved, ()))
    extra = {**pins, "left-pad": "1.0"}
    assert "left-pad==1.0 is locked but nothing needs it" in lock_problems(extra, ())
    assert any("faststream" in p for p in lock_problems(pins, ("tools",))), "the tools extra is not in runtime.txt"
    unhashed = "fastapi==0.165.0\n"
    with pytest.raises(AssertionError, match="no hash"):
        parse_lock(unhashed)
