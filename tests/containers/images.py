"""The registry images a baked project names, made present on the Docker engine.

`docker compose up --build` needs the images the bake names: the Dockerfile's `FROM` and the
`image:` of compose.yaml's redis and nginx. Where a registry answers (a laptop, GitHub Actions)
they are pulled and the tests run on the real ones. Where none does (our machines), each is built
locally under the same name from a minimal Debian: the stand-in recipes in
../shared/tools/container-standins/ (their README says how each differs from the real image and
what that could hide). A stand-in carries two labels: `standin=<recipe>` and `standin.hash=<sha256
of the recipe>`, so a warm run finds it current and builds nothing, and a changed recipe rebuilds.

    python -m tests.containers.images PROJECT_DIR     # prints: image, source, id
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from harness import bake

TEMPLATE_DIR = Path(__file__).resolve().parents[2]
STANDINS_DIR = Path(
    os.environ.get("STANDINS_DIR", TEMPLATE_DIR.parent / "shared/tools/container-standins")
)
# Which stand-in recipe makes which image (the recipes build exactly these names).
STANDIN_RECIPES = {
    "python:3.11-slim-bookworm": "python",
    "nginx:1.27-alpine": "nginx",
    "redis:7.4-alpine": "redis",
}
# Files a stand-in gets on top of its recipe, laid out as in the image (`COPY . /`): what the
# tests need of the real image that the recipe's Debian packages lack (each file says why).
SHIMS_DIR = Path(__file__).resolve().parent / "standin-shims"
PULL_TIMEOUT = 120
HASH_LABEL = "standin.hash"


def named_images(project: Path) -> list[str]:
    """Every registry image the project names: Dockerfile FROMs and compose `image:` values.

    Build stages (`FROM x AS build`, later `FROM build`) and images compose builds itself (a
    service with `build:`) are the project's own, not the registry's.
    """
    images: list[str] = []
    for dockerfile in sorted((project / "deploy").glob("Dockerfile*")):
        text = dockerfile.read_text(encoding="utf-8")
        args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, flags=re.MULTILINE))
        stages = set()
        for image, stage in re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, flags=re.MULTILINE):
            image = re.sub(r"\$\{(\w+)\}", lambda m, args=args: args[m.group(1)], image)
            if image not in stages:
                images.append(image)
            if stage:
                stages.add(stage)
    compose = bake.load_compose(project, bake.read_env(project))
    for service in compose["services"].values():
        if "build" not in service and "image" in service:
            images.append(service["image"])
    return list(dict.fromkeys(images))


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run the docker CLI; output captured as text."""
    return subprocess.run(  # noqa: S603 - fixed argv
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=check
    )


def labels(image: str) -> dict[str, str] | None:
    """The image's labels ({} when it has none), or None when the engine lacks the image."""
    result = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image, check=False)
    if result.returncode != 0:
        return None
    return yaml.safe_load(result.stdout) or {}


def recipe_hash(recipe: str) -> str:
    """sha256 of a stand-in recipe: its folder's files, the script that builds it, its shims."""
    digest = hashlib.sha256()
    files = sorted((STANDINS_DIR / recipe).rglob("*")) + [STANDINS_DIR / "build-standins.sh"]
    files += sorted((SHIMS_DIR / recipe).rglob("*"))
    for path in files:
        if path.is_file():
            digest.update(path.name.encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_standin(image: str) -> None:
    """Build the stand-in for `image` with its recipe, then label it with the recipe's hash."""
    recipe = STANDIN_RECIPES.get(image)
    if recipe is None or not (STANDINS_DIR / recipe).is_dir():
        raise SystemExit(
            f"{image}: no registry answers and there is no stand-in recipe for it in "
            f"{STANDINS_DIR} (known: {', '.join(STANDIN_RECIPES)})"
        )
    subprocess.run(  # noqa: S603 - fixed argv
        [str(STANDINS_DIR / "build-standins.sh"), recipe], check=True, timeout=1800
    )
    # One more layer: the recipe's shims, and a label, so the engine itself says which recipe
    # (and which version of it) made the image.
    shims = SHIMS_DIR / recipe
    copy = "COPY . /\n" if shims.is_dir() else ""
    dockerfile = f"FROM {image}\n{copy}LABEL {HASH_LABEL}={recipe_hash(recipe)}\n"
    with tempfile.TemporaryDirectory() as empty:
        context = shims if shims.is_dir() else empty
        subprocess.run(  # noqa: S603 - fixed argv
            ["docker", "build", "--quiet", "-t", image, "-f", "-", str(context)],
            input=dockerfile,
            text=True,
            check=True,
            capture_output=True,
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )


def source(image: str) -> str:
    """ "registry" or "stand-in (<recipe>)": what the engine holds under this name."""
    found = labels(image) or {}
    return f"stand-in ({found['standin']})" if "standin" in found else "registry"


def ensure(image: str) -> str:
    """Make `image` present and current; return what it is (see `source`)."""
    found = labels(image)
    recipe = STANDIN_RECIPES.get(image)
    if found is not None and "standin" not in found:
        return source(image)  # the real image, pulled earlier
    if found is not None and recipe and found.get(HASH_LABEL) == recipe_hash(recipe):
        return source(image)  # a current stand-in: a warm run builds nothing
    if found is None:
        try:
            pulled = docker("pull", "--quiet", image, timeout=PULL_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            pulled = None
        if pulled is not None and pulled.returncode == 0:
            return source(image)
    build_standin(image)
    return source(image)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    for image in named_images(Path(argv[0])):
        what = ensure(image)
        image_id = docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()
        print(f"{image:32} {what:22} {image_id[7:19]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
