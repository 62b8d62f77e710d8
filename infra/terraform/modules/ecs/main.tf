# The ECS cluster on Fargate: task definitions for the API (with a Redis sidecar), the ISO 8583
# host, the Celery worker (0 tasks until scaled up) and the one-shot migration; their services.

data "aws_region" "current" {}

locals {
  image = "${var.repository_url}:${var.image_tag}"
  # Secrets reach the containers as environment variables; the values never enter the plan.
  secrets = [for name in ["DATABASE_URL", "SECRET_KEY", "PIN_PEPPER"] : {
    name      = name
    valueFrom = var.secret_arns[name]
  }]
  environment = [
    { name = "ENVIRONMENT", value = var.environment_setting },
    { name = "LOG_LEVEL", value = "INFO" },
    { name = "LOG_FORMAT", value = "json" },
    { name = "STATEMENT_BUCKET", value = var.statement_bucket },
    { name = "AWS_REGION", value = data.aws_region.current.name },
    # Celery's messages go through PostgreSQL: the API's Redis is a sidecar of its own task,
    # out of the worker's reach.
    { name = "TASK_BROKER", value = "database" },
  ]
  log = { for task in ["app", "worker", "migration", "host"] : task => {
    logDriver = "awslogs"
    options = {
      awslogs-group         = var.log_group_names[task]
      awslogs-region        = data.aws_region.current.name
      awslogs-stream-prefix = task
    }
  } }
  families = {
    app       = "${var.name_prefix}-app"
    host      = "${var.name_prefix}-host"
    worker    = "${var.name_prefix}-worker"
    migration = "${var.name_prefix}-migration"
  }
}

resource "aws_ecs_cluster" "main" {
  #checkov:skip=CKV_AWS_65:Container Insights is a variable (off by default: it is billed per metric)
  name = var.name_prefix
  setting {
    name  = "containerInsights"
    value = var.container_insights ? "enabled" : "disabled"
  }
}

# ----- roles ------------------------------------------------------------------------------------

data "aws_iam_policy_document" "tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name_prefix}-execution"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "read_secrets" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = values(var.secret_arns)
  }
}

resource "aws_iam_role_policy" "read_secrets" {
  name   = "read-secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.read_secrets.json
}

resource "aws_iam_role" "task" {
  name               = "${var.name_prefix}-task"
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
}

data "aws_iam_policy_document" "statements" {
  statement {
    actions   = ["s3:PutObject", "s3:GetObject"]
    resources = ["${var.statement_bucket_arn}/statements/*"]
  }
}

resource "aws_iam_role_policy" "statements" {
  name   = "statements"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.statements.json
}

# ----- task definitions -------------------------------------------------------------------------

resource "aws_ecs_task_definition" "app" {
  family                   = local.families.app
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions = jsonencode([
    {
      name         = "app"
      image        = local.image
      essential    = true
      command      = ["uvicorn", "--factory", "device.sim.api.app:app_from_environment", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
      portMappings = [{ containerPort = 8000, protocol = "tcp" }]
      # Sign-in rate limits in the sidecar, shared by the API's workers in this task.
      environment      = concat(local.environment, [{ name = "REDIS_URL", value = "redis://localhost:6379/0" }])
      secrets          = local.secrets
      logConfiguration = local.log.app
      dependsOn        = [{ containerName = "redis", condition = "START" }]
      healthCheck = {
        command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]
        interval    = 15
        timeout     = 5
        retries     = 3
        startPeriod = 30
      }
    },
    {
      name             = "redis"
      image            = var.redis_image
      essential        = true
      command          = ["redis-server", "--save", "", "--appendonly", "no"]
      portMappings     = [{ containerPort = 6379, protocol = "tcp" }]
      logConfiguration = local.log.app
    },
  ])
}

resource "aws_ecs_task_definition" "host" {
  family                   = local.families.host
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 1024
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions = jsonencode([{
    name                   = "host"
    image                  = local.image
    essential              = true
    command                = ["atm-sim", "host", "serve", "--bind", "0.0.0.0", "--port", "8583"]
    readonlyRootFilesystem = true
    portMappings           = [{ containerPort = 8583, protocol = "tcp" }]
    environment            = local.environment
    secrets                = local.secrets
    logConfiguration       = local.log.host
    healthCheck = {
      command     = ["CMD", "python", "-c", "import socket; socket.create_connection(('127.0.0.1', 8583), 3).close()"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
  }])
}

resource "aws_ecs_task_definition" "worker" {
  #checkov:skip=CKV_AWS_336:the worker writes statement PDFs before upload and its fleet shards keep ATM state on disk
  family                   = local.families.worker
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 1024
  memory                   = 2048
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions = jsonencode([{
    name             = "worker"
    image            = local.image
    essential        = true
    command          = ["atm-sim", "worker", "--concurrency", "2"]
    environment      = local.environment
    secrets          = local.secrets
    logConfiguration = local.log.worker
  }])
}

resource "aws_ecs_task_definition" "migration" {
  family                   = local.families.migration
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions = jsonencode([{
    name                   = "migration"
    image                  = local.image
    essential              = true
    workingDirectory       = "/app"
    command                = ["alembic", "upgrade", "head"]
    readonlyRootFilesystem = true
    environment            = local.environment
    secrets                = local.secrets
    logConfiguration       = local.log.migration
  }])
}

# ----- services ---------------------------------------------------------------------------------

locals {
  services = {
    app    = { task = aws_ecs_task_definition.app.arn, count = var.app_desired_count }
    host   = { task = aws_ecs_task_definition.host.arn, count = var.host_desired_count }
    worker = { task = aws_ecs_task_definition.worker.arn, count = var.worker_desired_count }
  }
}

resource "aws_ecs_service" "service" {
  #checkov:skip=CKV_AWS_333:public IPs instead of a NAT gateway (about 32 USD a month); the security group admits only the allowed CIDRs
  for_each         = local.services
  name             = "${var.name_prefix}-${each.key}"
  cluster          = aws_ecs_cluster.main.id
  task_definition  = each.value.task
  desired_count    = each.value.count
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [var.security_group_id]
    assign_public_ip = true
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  lifecycle {
    # Scaling the worker by hand (or by the console) is not drift.
    ignore_changes = [desired_count]
  }
}
