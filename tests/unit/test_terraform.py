"""The Terraform of the AWS deployment, parsed with python-hcl2 (no provider can be downloaded
here): every module the guide names exists, every variable, output and secret that the guide,
terraform.tfvars.example and deploy.yml name is declared and wired to something real."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

ROOT = Path(__file__).parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
DEV = TERRAFORM / "environments" / "dev"
MODULES = ("networking", "security", "ecr", "rds", "secrets", "ecs", "s3", "monitoring")
GUIDE_OUTPUTS = {
    "ecr_repository_url",
    "ecs_cluster_name",
    "subnet_ids",
    "fargate_security_group_id",
    "migration_task_family",
    "app_service_name",
    "host_service_name",
    "worker_service_name",
}
SECRETS = {"DATABASE_URL", "DATABASE_URL_SYNC", "SECRET_KEY", "PIN_PEPPER"}


def unquote(value: Any) -> Any:
    return value[1:-1] if isinstance(value, str) and value.startswith('"') else value


@cache
def folder(path: Path) -> dict[str, dict[str, Any]]:
    """Blocks of every .tf file in a folder by kind: {"variable": {name: body}, ...}; resources
    and data sources keyed "type.name"."""
    found: dict[str, dict[str, Any]] = {}
    for tf in sorted(path.glob("*.tf")):
        document = hcl2.load(tf.open())
        for kind, blocks in document.items():
            for block in blocks if isinstance(blocks, list) else [blocks]:
                if kind in ("resource", "data"):
                    for rtype, named in block.items():
                        for name, body in named.items():
                            found.setdefault(kind, {})[f"{unquote(rtype)}.{unquote(name)}"] = body
                elif kind in ("variable", "output", "module"):
                    for name, body in block.items():
                        found.setdefault(kind, {})[unquote(name)] = body
                else:
                    found.setdefault(kind, {}).update(block)
    return found


def source_text(path: Path) -> str:
    return "\n".join(tf.read_text() for tf in sorted(path.glob("*.tf")))


def required_variables(path: Path) -> set[str]:
    return {
        name for name, body in folder(path).get("variable", {}).items() if "default" not in body
    }


def test_every_module_of_the_guide_exists_and_dev_uses_it() -> None:
    calls = folder(DEV)["module"]
    assert set(calls) == set(MODULES)
    for name, call in calls.items():
        assert unquote(call["source"]) == f"../../modules/{name}"
        assert (TERRAFORM / "modules" / name / "main.tf").is_file()


@pytest.mark.parametrize("name", MODULES)
def test_module_calls_pass_every_required_variable_and_only_declared_ones(name: str) -> None:
    module_dir = TERRAFORM / "modules" / name
    declared = set(folder(module_dir).get("variable", {}))
    call = folder(DEV)["module"][name]
    passed = {k for k in call if k not in ("source", "__is_block__", "__comments__")}
    assert required_variables(module_dir) <= passed, name
    assert passed <= declared, f"{name}: unknown inputs {passed - declared}"


def test_every_module_output_referenced_exists() -> None:
    text = source_text(DEV)
    for module, output in set(re.findall(r"module\.(\w+)\.(\w+)", text)):
        outputs = folder(TERRAFORM / "modules" / module).get("output", {})
        assert output in outputs, f"module.{module}.{output} is not an output of {module}"
    for name in re.findall(r"\bvar\.(\w+)", text):
        assert name in folder(DEV)["variable"], f"var.{name} is not declared in environments/dev"


def test_dev_has_the_outputs_the_guide_and_deploy_workflow_use() -> None:
    assert set(folder(DEV)["output"]) >= GUIDE_OUTPUTS
    assert folder(DEV)["output"]["subnet_ids"]["value"].startswith('${join(","')


def test_tfvars_example_sets_exactly_what_has_no_default() -> None:
    example = hcl2.load((DEV / "terraform.tfvars.example").open())
    keys = {k for k in example if not k.startswith("__")}
    assert {"db_password", "secret_key", "pin_pepper"} <= keys
    assert required_variables(DEV) <= keys
    assert keys <= set(folder(DEV)["variable"])
    for secret in ("db_password", "secret_key", "pin_pepper"):
        assert folder(DEV)["variable"][secret]["sensitive"] is True


def test_secrets_module_stores_the_four_settings_and_ecs_reads_them() -> None:
    secrets = source_text(TERRAFORM / "modules" / "secrets")
    for name in SECRETS:
        assert re.search(rf"^\s+{name}\s+=", secrets, re.MULTILINE), name
    ecs = source_text(TERRAFORM / "modules" / "ecs")
    assert 'for name in ["DATABASE_URL", "SECRET_KEY", "PIN_PEPPER"]' in ecs
    assert "values(var.secret_arns)" in ecs  # the execution role may read each of them


def test_networking_security_and_database_follow_the_guide() -> None:
    networking = folder(TERRAFORM / "modules" / "networking")
    assert unquote(networking["variable"]["vpc_cidr"]["default"]) == "10.0.0.0/16"
    assert networking["resource"]["aws_subnet.public"]["count"] == 2
    assert "aws_internet_gateway.main" in networking["resource"]
    rules = folder(TERRAFORM / "modules" / "security")["resource"]
    assert rules["aws_vpc_security_group_ingress_rule.api"]["from_port"] == 8000
    assert rules["aws_vpc_security_group_ingress_rule.iso_host"]["from_port"] == 8583
    for rule in ("api", "iso_host"):
        assert rules[f"aws_vpc_security_group_ingress_rule.{rule}"]["cidr_ipv4"] == "${each.value}"
    postgres = rules["aws_vpc_security_group_ingress_rule.postgres"]
    assert postgres["from_port"] == 5432
    assert "aws_security_group.fargate" in postgres["referenced_security_group_id"]
    rds = folder(TERRAFORM / "modules" / "rds")
    instance = rds["resource"]["aws_db_instance.main"]
    assert unquote(instance["storage_type"]) == "gp3"
    assert unquote(rds["variable"]["instance_class"]["default"]) == "db.t4g.micro"
    assert instance["storage_encrypted"] is True and instance["publicly_accessible"] is False


def test_ecs_tasks_logs_and_bucket_follow_the_guide() -> None:
    ecs = folder(TERRAFORM / "modules" / "ecs")
    families = set(
        re.findall(
            r"(\w+)\s+=\s+\"\$\{var\.name_prefix\}-(\w+)\"",
            source_text(TERRAFORM / "modules" / "ecs"),
        )
    )
    assert {
        ("app", "app"),
        ("host", "host"),
        ("worker", "worker"),
        ("migration", "migration"),
    } <= families
    assert ecs["variable"]["worker_desired_count"]["default"] == 0
    app = ecs["resource"]["aws_ecs_task_definition.app"]["container_definitions"]
    assert 'name             = "redis"' in source_text(TERRAFORM / "modules" / "ecs")
    assert "awslogs" in source_text(TERRAFORM / "modules" / "ecs") and "local.log.app" in app
    monitoring = source_text(TERRAFORM / "modules" / "monitoring")
    assert 'toset(["app", "worker", "migration", "host"])' in monitoring
    assert 'name              = "/ecs/${var.name_prefix}/${each.key}"' in monitoring
    assert 'name_prefix = "atm-simulator-${var.environment}"' in source_text(DEV)
    s3 = folder(TERRAFORM / "modules" / "s3")["resource"]
    block = s3["aws_s3_bucket_public_access_block.statements"]
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy"))
    assert "aws_s3_bucket_server_side_encryption_configuration.statements" in s3
    assert "Enabled" in str(s3["aws_s3_bucket_versioning.statements"])


def test_deploy_workflow_names_match_what_terraform_creates() -> None:
    deploy = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    assert deploy["env"]["PROJECT"] == "atm-simulator"  # + "-" + environment = name_prefix
    text = (ROOT / ".github" / "workflows" / "deploy.yml").read_text()
    assert '--task-definition "${PROJECT}-${DEPLOY_ENV}-migration"' in text  # migration family
    assert 'cluster="${PROJECT}-${DEPLOY_ENV}"' in text  # aws_ecs_cluster name = name_prefix
    assert 'service="${PROJECT}-${DEPLOY_ENV}-${role}"' in text
    assert "for role in app host worker" in text
    assert "${registry}/${PROJECT}-${DEPLOY_ENV}" in text  # the ECR repository's name
    ecs = source_text(TERRAFORM / "modules" / "ecs")
    assert 'name             = "${var.name_prefix}-${each.key}"' in ecs
    assert "name = var.name_prefix" in ecs
    assert "name                 = var.name_prefix" in source_text(TERRAFORM / "modules" / "ecr")
