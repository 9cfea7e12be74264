"""The image's build stage, without Docker: copy exactly what the Dockerfile's build stage
copies (minus what .dockerignore hides), build the wheel as it does, and check the wheel holds
every file the services load and that the services import from it alone."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _build_stage_sources() -> list[str]:
    lines = [line.split() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    first, second = [i for i, line in enumerate(lines) if line[:1] == ["FROM"]][:2]
    return [src for line in lines[first:second] if line[:1] == ["COPY"] and not line[1].startswith("--")
            for src in line[1:-1]]


def _ignored(relative: Path, patterns: list[str]) -> bool:
    text = relative.as_posix()
    return any(fnmatch.fnmatch(text, p) or fnmatch.fnmatch(text, p.removeprefix("**/"))
               or any(fnmatch.fnmatch(part, p.removeprefix("**/")) for part in relative.parts) for p in patterns)


def test_the_image_wheel_holds_every_file_the_services_load(tmp_path: Path) -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    context = tmp_path / "context"
    expected: set[str] = set()
    for source in _build_stage_sources():
        origin = ROOT / source
        files = [origin] if origin.is_file() else [p for p in origin.rglob("*") if p.is_file()]
        for path in files:
            relative = path.relative_to(ROOT)
            if _ignored(relative, patterns):
                continue
            (context / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, context / relative)
            if origin.is_dir():
                expected.add(relative.as_posix())
    assert expected, "the build stage copies no package"

    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(context)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    [wheel] = wheels.glob("aftersales-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packaged = set(archive.namelist())
    missing = sorted(expected - packaged)
    assert not missing, (f"the image would lack {missing}; add their patterns to "
                         "[tool.setuptools.package-data] in pyproject.toml")

    # The services import, load their tables and build their APIs from the wheel alone
    # (not from this checkout): run in an empty directory with only the unpacked wheel.
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    probe = (
        "import sys; from services import load; from shared.settings import SERVICES;"
        "from shared.runtime import ServiceRuntime;"
        "import services, shared; assert all(m.__file__.startswith(sys.argv[1]) for m in (services, shared)), shared.__file__;"
        "[ServiceRuntime(load(n)).app.openapi() for n in SERVICES];"
        "from services.complaints.config import ComplaintRules; from services.complaints.tables import load_tables;"
        "r = ComplaintRules(); load_tables(r.classification_file, r.routing_file, r.directory_file);"
        "from services.quality.config import QualityRules, load_baseline_rates;"
        "load_baseline_rates(QualityRules().baseline_rates_file);"
        "from shared.migrations import KERNEL_MIGRATIONS; assert list(KERNEL_MIGRATIONS.glob('*.sql'));"
        "[(load(n).migrations is None or list(load(n).migrations.glob('*.sql'))) or sys.exit(n + ' has no migrations')"
        " for n in SERVICES]"
    )
    empty = tmp_path / "cwd"
    empty.mkdir()
    run = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r}); " + probe, str(site)],
                         cwd=empty, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
