"""The names a user reads in the docs are the names the code uses, and the other way round.

Settings and their environment variables, chart values, metrics, annotation, label and
finalizer keys, and error reasons: each one the code exposes is documented under that exact
name, and each one the docs name exists.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

import elasticsan_snapshotter
from elasticsan_snapshotter import metrics
from elasticsan_snapshotter.domain import parameters
from elasticsan_snapshotter.domain.errors import SnapshotterError
from elasticsan_snapshotter.settings import Settings

REPO = Path(__file__).resolve().parents[3]
PACKAGE = REPO / "operator" / "elasticsan_snapshotter"
CHART = REPO / "charts" / "elasticsan-snapshotter"
README = (REPO / "README.md").read_text()
INSTALL = (REPO / "docs" / "install.md").read_text()
OPERATIONS = (REPO / "docs" / "operations.md").read_text()
DOCS = "\n".join([README, *(p.read_text() for p in sorted((REPO / "docs").glob("*.md")))])

# Read by azure-identity or set by the pod spec, not by Settings.
IDENTITY_ENV = {"AZURE_FEDERATED_TOKEN_FILE", "POD_NAMESPACE", "POD_ID"}


def section(text: str, heading: str) -> str:
    """The text under a Markdown heading, up to the next heading of any level."""
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1 :]
    following = re.search(r"^#+ ", rest, flags=re.MULTILINE)
    return rest[: following.start()] if following else rest


def table_rows(text: str, header: str) -> list[list[str]]:
    """Cells of the Markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def ticked(text: str) -> set[str]:
    return set(re.findall(r"`([^`\n]+)`", text))


def env_names(text: str) -> set[str]:
    return set(re.findall(r"\b(?:ESS|AZURE|POD)_[A-Z_]+\b", text))


def settings_env() -> set[str]:
    return {f.metadata["env"] for f in fields(Settings) if "env" in f.metadata}


def test_every_docs_page_is_in_the_index_and_the_readme() -> None:
    pages = {p.name for p in (REPO / "docs").glob("*.md")} - {"README.md"}
    index = set(re.findall(r"\]\(([a-z-]+\.md)\)", (REPO / "docs" / "README.md").read_text()))
    layout = set(re.findall(r"\]\(docs/([a-z-]+\.md)\)", section(README, "## Layout")))
    assert index == pages
    assert layout == pages


# --- settings ------------------------------------------------------------------------------


def test_readme_settings_table_lists_every_setting_and_no_other() -> None:
    table = section(README, "## Operator settings")
    documented = env_names(table)
    assert settings_env() - documented == set(), "settings missing from the README's table"
    assert documented - settings_env() - IDENTITY_ENV == set(), "README names settings that do not exist"


def test_every_environment_variable_the_chart_sets_is_a_setting() -> None:
    template = (CHART / "templates" / "deployment.yaml").read_text()
    chart_env = set(re.findall(r"- name: ([A-Z_]+)\n", template))
    assert chart_env, "no env found in the Deployment template"
    assert chart_env - settings_env() - IDENTITY_ENV == set()


def test_install_settings_table_covers_every_value_driven_variable() -> None:
    template = (CHART / "templates" / "deployment.yaml").read_text()
    # Env entries whose value comes from the values (directly or through a helper of them).
    from_values = {
        name
        for name, value in re.findall(r"- name: ([A-Z_]+)\n\s+value: (.*)\n", template)
        if ".Values" in value or "ess.armEndpoint" in value or "ess.peeringName" in value
    }
    from_values |= {"ESS_CA_BUNDLE", "AZURE_AUTHORITY_HOST"}  # set inside an if/with on a value
    rows = table_rows(INSTALL, "| Setting | Environment variable |")
    documented = env_names(" ".join(row[1] for row in rows))
    assert from_values - documented == set()
    assert documented - settings_env() - IDENTITY_ENV == set()


# --- chart values --------------------------------------------------------------------------


def values_paths() -> set[str]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    paths: set[str] = set()

    def walk(node: Any, prefix: str) -> None:
        for key, child in node.items():
            path = f"{prefix}{key}"
            paths.add(path)
            if isinstance(child, dict):
                walk(child, path + ".")

    walk(values, "")
    return paths


def test_every_chart_value_the_docs_name_exists() -> None:
    paths = values_paths()
    top = {p for p in paths if "." not in p}
    named = set()
    # Not the developer pages, which name Python modules (`azure.identity.aio`).
    user_docs = [README] + [
        p.read_text()
        for p in sorted((REPO / "docs").glob("*.md"))
        if p.name not in ("azure.md", "architecture.md", "emulator.md")
    ]
    for token in ticked("\n".join(user_docs)):
        # `a.b.c`, `a.b=value` or `--set a.b=value`, whose first part is a top-level value.
        match = re.fullmatch(r"(?:--set )?([a-z][A-Za-z]*(?:\.[A-Za-z]+)+)(?:=\S*)?", token)
        if match and match.group(1).split(".")[0] in top:
            named.add(match.group(1))
    assert named, "no chart value found in the docs"
    assert named - paths == set()


def test_every_value_of_the_install_settings_table_exists() -> None:
    paths = values_paths()
    for row in table_rows(INSTALL, "| Setting | Environment variable |"):
        tokens = re.findall(r"`([a-z][A-Za-z.]*)`", row[0])  # not the values of one (`AzurePublicCloud`)
        prefix = ""
        for token in tokens:
            # `concurrency.maxConcurrency`, `writeRate`: a bare name shares the previous prefix.
            if "." in token:
                prefix = token.rsplit(".", 1)[0] + "."
                assert token in paths, token
            else:
                assert token in paths or prefix + token in paths, token


def test_every_status_field_of_our_crds_is_in_the_status_reference() -> None:
    reference = ticked(section(OPERATIONS, "## Status reference"))
    for path in sorted((REPO / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
            assert set(status) - reference == set(), crd["spec"]["names"]["kind"]


def test_class_parameters_table_is_the_parser_s_keys() -> None:
    rows = table_rows((REPO / "docs" / "csi.md").read_text(), "| key | class |")
    documented = {row[0].strip("`"): row[1] for row in rows}
    expected = {}
    for key in parameters.STORAGE_CLASS_KEYS:
        expected[key] = "both" if key in parameters.SNAPSHOT_CLASS_KEYS else "StorageClass"
    for key in parameters.SNAPSHOT_CLASS_KEYS:
        expected.setdefault(key, "VolumeSnapshotClass")
    assert documented == expected


# --- metrics -------------------------------------------------------------------------------


def registered_metrics() -> set[str]:
    importlib.import_module("elasticsan_snapshotter.csi.rpc")  # the CSI controller's own two
    return {family.name.removeprefix(metrics.NAMESPACE + "_") for family in metrics.REGISTRY.collect()}


def test_every_metric_is_documented_and_every_documented_metric_exists() -> None:
    rows = table_rows(OPERATIONS, "| Metric | Type |")
    table = {row[0].strip("`") for row in rows}
    csi = {
        name.removeprefix(metrics.NAMESPACE + "_")
        for name in re.findall(
            r"`(elasticsan_snapshotter_csi_[a-z_]+)", (REPO / "docs" / "csi.md").read_text()
        )
    }
    documented = table | csi
    exposed = set()
    for name in registered_metrics():
        # A counter `x` is exposed (and documented) as `x_total`.
        exposed.add(name if f"{name}_total" not in documented else f"{name}_total")
    assert exposed - documented == set(), "metrics missing from docs/operations.md"
    assert documented - exposed == set(), "docs name metrics that do not exist"
    types = {row[0].strip("`"): row[1] for row in rows}
    for family in metrics.REGISTRY.collect():
        short = family.name.removeprefix(metrics.NAMESPACE + "_")
        key = f"{short}_total" if f"{short}_total" in types else short
        if key in types:
            assert types[key] == family.type, key


# --- annotations, labels, finalizers ---------------------------------------------------------

# Never on an object: Kopf's bookkeeping name (set so that Kopf never writes under a foreign
# prefix; no handler of ours uses a Kopf finalizer).
UNSEEN_KEYS = {"kopf-finalizer"}


def code_keys() -> set[str]:
    keys = set()
    for path in PACKAGE.rglob("*.py"):
        if "_generated" in path.parts:
            continue
        text = path.read_text()
        keys |= set(re.findall(r"f\"\{DRIVER_NAME\}/([a-z0-9-]+)\"", text))
        keys |= set(re.findall(r"\"elasticsan\.snapshotter\.dev/([a-z0-9-]+)\"", text))
    return keys


def test_every_key_under_the_driver_prefix_is_in_the_keys_table() -> None:
    rows = table_rows(OPERATIONS, "| Key | Kind |")
    table = set(re.findall(r"elasticsan\.snapshotter\.dev/([a-z0-9-]+)", " ".join(row[0] for row in rows)))
    keys = code_keys()
    assert keys - UNSEEN_KEYS - table == set(), "keys missing from docs/operations.md"
    assert table - keys == set(), "docs/operations.md names keys the code does not use"


def test_every_key_under_the_driver_prefix_is_documented_and_exists() -> None:
    documented = set(re.findall(r"elasticsan\.snapshotter\.dev/([a-z0-9-]+)", DOCS))
    # docs/schedules.md writes its keys as `.../name` after naming the prefix once.
    documented |= set(re.findall(r"`\.\.\./([a-z0-9-]+)`", DOCS))
    documented.discard("v1alpha1")  # the API group's version, not a key
    keys = code_keys()
    assert keys, "no keys found in the code"
    assert keys - UNSEEN_KEYS - documented == set(), "keys missing from the docs"
    assert documented - keys == set(), "docs name keys the code does not use"


# --- error reasons -------------------------------------------------------------------------

# Never shown to a user: a conflict is retried quietly, an expired watch is re-listed, and the
# CSI controller answers with gRPC codes (docs/csi.md), not reasons.
INTERNAL_REASONS = {"Conflict", "Expired", "OperationPending", "InvalidPageToken"}
# The base of NotYet and friends; only its subclasses are raised.
ABSTRACT_REASONS = {"Error", "Waiting"}


def error_classes() -> list[type[SnapshotterError]]:
    for module in pkgutil.walk_packages(elasticsan_snapshotter.__path__, "elasticsan_snapshotter."):
        if not any(
            part in module.name for part in ("_generated", "emulator", "demo", "local_cluster", "__main__")
        ):
            importlib.import_module(module.name)
    found: list[type[SnapshotterError]] = []
    pending: list[type[SnapshotterError]] = [SnapshotterError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.append(sub)
            pending.append(sub)
    return found


def test_every_error_reason_is_documented_with_whether_it_is_retried() -> None:
    rows = table_rows(OPERATIONS, "| Reason | Retried |")
    documented = {row[0].strip("`"): row[1] for row in rows}
    groups = (REPO / "docs" / "groups.md").read_text()
    classes = [c for c in error_classes() if c.reason not in INTERNAL_REASONS | ABSTRACT_REASONS]
    assert len(classes) > 10
    for cls in classes:
        if cls.__module__.endswith(".freeze"):
            assert f"`{cls.reason}`" in groups, f"{cls.reason} not in docs/groups.md"
            continue
        assert cls.reason in documented, f"{cls.reason} ({cls.__module__}) not in docs/operations.md"
        assert documented[cls.reason] == ("yes" if cls.retryable else "no"), cls.reason
    reasons = {c.reason for c in classes}
    assert set(documented) - reasons == set(), "docs name reasons the code does not have"


def posted_reasons() -> set[str]:
    """Literal Event reasons: ``recorder.record(obj, TYPE, "Reason", ...)`` and ``reason="..."``."""
    found = set()
    for path in (PACKAGE / "kubernetes").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr == "record" and len(node.args) >= 3:
                candidates = [node.args[2]]
            elif node.func.attr == "handle":
                candidates = [kw.value for kw in node.keywords if kw.arg == "reason"]
            else:
                continue
            for value in candidates:
                for const in ast.walk(value):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        found.add(const.value)
    return found


def test_every_event_reason_posted_is_in_the_events_table_and_back() -> None:
    events = set()
    for row in table_rows(OPERATIONS, "| Reason | Type |"):
        events |= set(re.findall(r"`([A-Za-z]+)`", row[0]))
    posted = posted_reasons()
    assert {"ProvisioningFailed", "ExportFailed", "SourceVolumeNotMapped"} <= posted  # the scan works
    assert posted - events == set(), "Event reasons missing from docs/operations.md"
    errors = {c.reason for c in error_classes()}
    # The explainer's reasons come from a table of its own (kubernetes/snapshot_watch.py).
    sources = "".join(p.read_text() for p in (PACKAGE / "kubernetes").glob("*.py"))
    assert {r for r in events - posted - errors if f'"{r}"' not in sources} == set()
