"""Packaging: a gateway installs ``procedge[edge]`` (no grpc, no compiler), every dependency is
a range with the tested versions in constraints.txt, the committed Sparkplug module matches
its ``.proto``, and the container and systemd files keep what the gateway relies on."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PB2 = ROOT / "edge_runtime/sparkplug/sparkplug_b_pb2.py"
PROTO = "edge_runtime/sparkplug/sparkplug_b.proto"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]

# grpc and its compiler cannot be imported, here or in any child process (PYTHONPATH shadow)
NO_GRPC = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("grpc", "grpc_tools"):
            raise ImportError(f"gateway has no {name}")
sys.meta_path.insert(0, Block())
from edge_runtime.sparkplug import codec
payload = codec.Payload(timestamp=1, seq=3)
metric = payload.metrics.add(name="FT101/PV", datatype=codec.DOUBLE)
codec.set_value(metric, codec.DOUBLE, 2.5)
back = codec.decode(payload.SerializeToString())
assert codec.number(back.metrics[0], codec.DOUBLE) == 2.5 and back.seq == 3
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("grpc", "grpc_tools"))
assert not loaded, loaded
print(codec.Payload.__module__)
"""


def test_sparkplug_codec_imports_without_grpc_or_its_compiler(tmp_path: Path):
    shadow = tmp_path / "shadow"
    for name in ("grpc", "grpc_tools"):
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise ImportError('no {name} here')\n")
    env = {"PYTHONPATH": f"{shadow}:{ROOT}", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", NO_GRPC], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "edge_runtime.sparkplug.sparkplug_b_pb2"


def _serialized_descriptor(source: str) -> bytes:
    """The FileDescriptorProto bytes a generated ``*_pb2.py`` registers (what the wire and
    the classes are built from)."""
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AddSerializedFile"):
            return ast.literal_eval(node.args[0])
    raise AssertionError("no AddSerializedFile(...) in the generated module")


def _gencode_version(source: str) -> Version:
    found = re.search(r"^# Protobuf Python Version: (\S+)$", source, re.M)
    assert found, "generated module without its protobuf version header"
    return Version(found.group(1))


def test_committed_sparkplug_module_is_generated_from_the_proto(tmp_path: Path):
    """`make proto` regenerates it; a .proto edit without regenerating fails here."""
    assert PB2.is_file(), f"{PB2.relative_to(ROOT)} missing: run `make proto` and commit it"
    out = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}",
                          f"--python_out={tmp_path}", str(ROOT / PROTO)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    fresh = (tmp_path / PROTO).with_name("sparkplug_b_pb2.py").read_text()
    committed = PB2.read_text()
    assert _serialized_descriptor(committed) == _serialized_descriptor(fresh), \
        "sparkplug_b_pb2.py is stale: run `make proto` and commit it"
    # with the constrained toolchain (make setup) the file is byte for byte protoc's output
    tools = metadata.version("grpcio-tools")
    if tools == _constraints()["grpcio-tools"]:
        assert committed == fresh, "run `make proto` (grpcio-tools as in constraints.txt)"


def test_protobuf_runtime_range_accepts_the_committed_generated_code():
    """Generated code refuses an older runtime or another major: pyproject's range must
    start at the generator's version and stay within its major."""
    gencode = _gencode_version(PB2.read_text())
    (spec,) = [Requirement(r) for r in EXTRAS["edge"] if r.startswith("protobuf")]
    floors = [Version(s.version) for s in spec.specifier if s.operator == ">="]
    ceilings = [Version(s.version) for s in spec.specifier if s.operator == "<"]
    assert floors and floors[0] >= gencode, (spec, gencode)
    assert ceilings and ceilings[0] <= Version(f"{gencode.major + 1}"), (spec, gencode)
    assert spec.specifier.contains(_constraints()["protobuf"])


def test_edge_extra_installs_no_grpc_and_every_dependency_is_a_range():
    edge = {canonicalize_name(Requirement(r).name) for r in EXTRAS["edge"]}
    assert not {n for n in edge if n.startswith("grpc")}, edge
    assert "grpcio-tools" in {canonicalize_name(Requirement(r).name) for r in EXTRAS["dev"]}
    for extra, requirements in EXTRAS.items():
        for text in requirements:
            req = Requirement(text)
            if req.name == "procedge":
                continue
            ops = {s.operator for s in req.specifier}
            assert ops == {">=", "<"}, f"[{extra}] {text}: want '>=X,<NEXT_MAJOR'"


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not name==version"
            pins[canonicalize_name(name)] = version
    return pins


def _closure(requirements: list[str]) -> dict[str, Requirement]:
    """Every distribution these requirements reach (markers evaluated, extras followed),
    from the installed packages' metadata: no index needed."""
    seen: dict[str, Requirement] = {}
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        env = default_environment() | {"extra": extra}
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        if name == "procedge":
            continue
        key = name + "[" + ",".join(sorted(req.extras)) + "]"
        if key in seen:
            continue
        seen[key] = req
        for child in metadata.requires(req.name) or []:
            for want in sorted(req.extras) or [""]:
                todo.append((Requirement(child), want))
    return {canonicalize_name(r.name): r for r in seen.values()}


def test_constraints_pin_every_dependency_within_the_ranges():
    pins = _constraints()
    assert "procedge" not in pins
    wanted = [r for reqs in EXTRAS.values() for r in reqs]
    closure = _closure(wanted)
    assert set(closure) <= set(pins), f"not pinned: {sorted(set(closure) - set(pins))}"
    for text in wanted:
        req = Requirement(text)
        if req.name != "procedge":
            assert req.specifier.contains(pins[canonicalize_name(req.name)]), (text, pins)


def test_make_setup_installs_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r'pip install .*-c constraints\.txt .*-e "\.\[train,dev\]"', makefile)
    assert re.search(r"^proto:", makefile, re.M)


def _stages(dockerfile: str) -> list[list[str]]:
    lines = re.sub(r"\\\n\s*", " ", dockerfile).splitlines()
    stages: list[list[str]] = []
    for line in (x.strip() for x in lines):
        if line.startswith("FROM "):
            stages.append([])
        if line and not line.startswith("#") and stages:
            stages[-1].append(line)
    return stages


def test_gateway_dockerfile_is_multi_stage_slim_non_root_and_grpc_free():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = _stages(dockerfile)
    assert len(stages) >= 2, "builder + runtime stages"
    builder, final = "\n".join(stages[0]), stages[-1]
    assert re.search(r"pip install .*-c constraints\.txt .*\.\[edge\]", builder)
    assert final[0].startswith("FROM python:3.11-slim")
    user = [x.split()[1] for x in final if x.startswith("USER ")]
    assert user and user[-1] not in ("root", "0", "0:0")
    assert any(x.startswith("HEALTHCHECK") and "/healthz" in x for x in final)
    assert any(x.startswith("ENTRYPOINT") and '"run"' in x and "/config/gateway.yaml" in x
               for x in final)
    assert not any("grpcio" in x for stage in stages for x in stage)  # nothing installs it
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "artifacts"} <= {x.strip("/") for x in ignored}


def test_compose_config_is_a_valid_gateway_config(tmp_path: Path):
    import yaml

    from edge_runtime.config import EdgeConfig

    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())
    assert {"mosquitto", "procedge"} <= set(compose["services"])
    gateway = yaml.safe_load((ROOT / "deploy/compose/gateway.yaml").read_text())
    config = EdgeConfig.model_validate(gateway)
    assert config.mqtt.host == "mosquitto" and config.metrics_port


def test_systemd_unit_is_type_notify_with_a_watchdog():
    unit = (ROOT / "deploy/procedge-edge.service").read_text()
    keys = dict(re.findall(r"^(\w+)=(.*)$", unit, re.M))
    assert keys["Type"] == "notify"
    assert keys["NotifyAccess"] == "main"
    assert int(keys["WatchdogSec"]) > 0
