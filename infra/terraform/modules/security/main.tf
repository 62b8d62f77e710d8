# Security groups: Fargate tasks take the API (8000) and the ISO 8583 host (8583) from the allowed
# CIDRs only; PostgreSQL takes 5432 from the Fargate tasks only.

resource "aws_security_group" "fargate" {
  #checkov:skip=CKV2_AWS_5:attached by the ECS services of the ecs module (checkov does not follow it across modules)
  name        = "${var.name_prefix}-fargate"
  description = "ATM simulator tasks: API and ISO 8583 host from allowed CIDRs"
  vpc_id      = var.vpc_id
  tags        = { Name = "${var.name_prefix}-fargate" }
}

resource "aws_vpc_security_group_ingress_rule" "api" {
  for_each          = toset(var.allowed_cidrs)
  security_group_id = aws_security_group.fargate.id
  description       = "HTTP API from ${each.value}"
  cidr_ipv4         = each.value
  from_port         = 8000
  to_port           = 8000
  ip_protocol       = "tcp"
}

resource "aws_vpc_security_group_ingress_rule" "iso_host" {
  for_each          = toset(var.allowed_cidrs)
  security_group_id = aws_security_group.fargate.id
  description       = "ISO 8583 host from ${each.value}"
  cidr_ipv4         = each.value
  from_port         = 8583
  to_port           = 8583
  ip_protocol       = "tcp"
}

# Tasks in the same group reach each other's ISO host (ATMs of the API's lab, fleet workers).
resource "aws_vpc_security_group_ingress_rule" "iso_host_from_tasks" {
  security_group_id            = aws_security_group.fargate.id
  description                  = "ISO 8583 host from the simulator's own tasks"
  referenced_security_group_id = aws_security_group.fargate.id
  from_port                    = 8583
  to_port                      = 8583
  ip_protocol                  = "tcp"
}

resource "aws_vpc_security_group_egress_rule" "fargate_out" {
  #checkov:skip=CKV_AWS_382:tasks pull images from ECR and call Secrets Manager, S3 and CloudWatch over the internet (no NAT, no VPC endpoints, to keep the cost down)
  security_group_id = aws_security_group.fargate.id
  description       = "HTTPS to AWS APIs and ECR; PostgreSQL inside the VPC"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
}

resource "aws_security_group" "rds" {
  #checkov:skip=CKV2_AWS_5:attached by the database instance of the rds module (checkov does not follow it across modules)
  name        = "${var.name_prefix}-rds"
  description = "ATM simulator PostgreSQL: only from the Fargate tasks"
  vpc_id      = var.vpc_id
  tags        = { Name = "${var.name_prefix}-rds" }
}

resource "aws_vpc_security_group_ingress_rule" "postgres" {
  security_group_id            = aws_security_group.rds.id
  description                  = "PostgreSQL from the Fargate tasks"
  referenced_security_group_id = aws_security_group.fargate.id
  from_port                    = 5432
  to_port                      = 5432
  ip_protocol                  = "tcp"
}
