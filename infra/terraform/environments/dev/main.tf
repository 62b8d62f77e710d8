# The dev environment of the ATM simulator on AWS: every module wired together.

data "aws_caller_identity" "current" {}

locals {
  name_prefix = "atm-simulator-${var.environment}"
}

module "networking" {
  source      = "../../modules/networking"
  name_prefix = local.name_prefix
}

module "security" {
  source        = "../../modules/security"
  name_prefix   = local.name_prefix
  vpc_id        = module.networking.vpc_id
  allowed_cidrs = var.allowed_cidrs
}

module "ecr" {
  source      = "../../modules/ecr"
  name_prefix = local.name_prefix
}

module "rds" {
  source              = "../../modules/rds"
  name_prefix         = local.name_prefix
  subnet_ids          = module.networking.public_subnet_ids
  security_group_id   = module.security.rds_security_group_id
  db_password         = var.db_password
  deletion_protection = false
  skip_final_snapshot = true
}

module "secrets" {
  source                  = "../../modules/secrets"
  name_prefix             = local.name_prefix
  db_address              = module.rds.address
  db_port                 = module.rds.port
  db_name                 = module.rds.db_name
  db_username             = module.rds.username
  db_password             = var.db_password
  secret_key              = var.secret_key
  pin_pepper              = var.pin_pepper
  recovery_window_in_days = 0
}

module "s3" {
  source        = "../../modules/s3"
  bucket_name   = "${local.name_prefix}-statements-${data.aws_caller_identity.current.account_id}"
  force_destroy = true
}

module "monitoring" {
  source           = "../../modules/monitoring"
  name_prefix      = local.name_prefix
  cluster_name     = local.name_prefix
  app_service_name = "${local.name_prefix}-app"
}

module "ecs" {
  source               = "../../modules/ecs"
  name_prefix          = local.name_prefix
  repository_url       = module.ecr.repository_url
  secret_arns          = module.secrets.secret_arns
  statement_bucket     = module.s3.bucket_name
  statement_bucket_arn = module.s3.bucket_arn
  log_group_names      = module.monitoring.log_group_names
  subnet_ids           = module.networking.public_subnet_ids
  security_group_id    = module.security.fargate_security_group_id
  worker_desired_count = var.worker_desired_count
}
