"""The GitHub workflows, read as data: ci.yml runs the same lint, type-check and test commands as
.ci/run and uploads coverage; deploy.yml tests, pushes, migrates and deploys with the guide's
secrets and variables. (Schema and security are checked by check-jsonschema and zizmor.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name: str) -> dict[Any, Any]:
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job.get("steps", []))


def test_ci_runs_the_same_checks_as_the_ci_script() -> None:
    ci = workflow("ci.yml")
    assert ci["on"]["push"]["branches"] == ["main"]
    assert ci["on"]["pull_request"]["branches"] == ["main"]
    assert set(ci["jobs"]) == {"lint", "type-check", "test"}
    script = (ROOT / ".ci" / "run").read_text()
    lint = runs(ci["jobs"]["lint"])
    for command in ("ruff check .", "ruff format --check ."):
        assert command in lint and command in script
    mypy = "mypy --strict device peripherals host config scripts"
    assert mypy in runs(ci["jobs"]["type-check"]) and mypy in script
    test = " ".join(runs(ci["jobs"]["test"]).split())
    assert "python -m pytest tests" in test  # the README's `.venv/bin/pytest tests`
    assert "--cov-report=term" in test and "--cov-report=xml:coverage.xml" in test


def test_ci_uploads_the_xml_coverage_as_coverage_report() -> None:
    steps = workflow("ci.yml")["jobs"]["test"]["steps"]
    upload = next(s for s in steps if "upload-artifact" in s.get("uses", ""))
    assert upload["with"]["name"] == "coverage-report"
    assert upload["with"]["path"] == "coverage.xml"
    assert upload["if"] == "always()"


def test_deploy_is_manual_and_chains_test_build_migrate_deploy() -> None:
    deploy = workflow("deploy.yml")
    choice = deploy["on"]["workflow_dispatch"]["inputs"]["environment"]
    assert choice["options"] == ["dev", "production"] and choice["type"] == "choice"
    jobs = deploy["jobs"]
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    assert jobs["build-and-push"]["needs"] == "test"
    assert jobs["migrate"]["needs"] == "build-and-push"
    assert jobs["deploy"]["needs"] == "migrate"
    build = runs(jobs["build-and-push"])
    assert "docker build --target production" in build
    assert ':${GITHUB_SHA}"' in build and ':latest"' in build
    assert build.count("docker push") == 2
    migrate = runs(jobs["migrate"])
    assert "aws ecs run-task" in migrate and "--launch-type FARGATE" in migrate
    assert "aws ecs wait tasks-stopped" in migrate
    assert "exitCode" in migrate and 'test "$code" = "0"' in migrate
    rollout = runs(jobs["deploy"])
    assert "--force-new-deployment" in rollout and "aws ecs wait services-stable" in rollout


def test_deploy_uses_exactly_the_guides_secrets_and_variables() -> None:
    text = (WORKFLOWS / "deploy.yml").read_text()
    assert set(re.findall(r"secrets\.(\w+)", text)) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    assert set(re.findall(r"vars\.(\w+)", text)) == {
        "AWS_REGION",
        "SUBNET_IDS",
        "SECURITY_GROUP_ID",
    }
    for job in ("migrate",):
        env = workflow("deploy.yml")["jobs"][job]["env"]
        assert env["SUBNET_IDS"] == "${{ vars.SUBNET_IDS }}"
        assert env["SECURITY_GROUP_ID"] == "${{ vars.SECURITY_GROUP_ID }}"


def test_every_action_is_pinned_to_a_commit() -> None:
    for path in WORKFLOWS.glob("*.yml"):
        for line in path.read_text().splitlines():
            match = re.search(r"uses:\s*(\S+)", line)
            if match and not match.group(1).startswith("./"):
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", match.group(1)), line
