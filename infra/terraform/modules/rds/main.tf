# The bank's PostgreSQL 16: db.t4g.micro on gp3, encrypted, private, TLS required.

resource "aws_db_subnet_group" "main" {
  name       = "${var.name_prefix}-db"
  subnet_ids = var.subnet_ids
}

resource "aws_db_parameter_group" "postgres" {
  name   = "${var.name_prefix}-postgres16"
  family = "postgres16"
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "1000" # statements slower than a second reach the PostgreSQL log
  }
}

resource "aws_db_instance" "main" {
  #checkov:skip=CKV_AWS_157:one zone for the simulator; Multi-AZ doubles the price
  #checkov:skip=CKV_AWS_118:enhanced monitoring costs per instance; CloudWatch's basic metrics suffice here
  #checkov:skip=CKV_AWS_161:the product connects with a password from Secrets Manager, not IAM tokens
  #checkov:skip=CKV_AWS_353:Performance Insights is off on the smallest class to keep it free
  #checkov:skip=CKV_AWS_354:Performance Insights is off (see CKV_AWS_353)
  #checkov:skip=CKV_AWS_293:deletion protection is a variable: dev sets it false so terraform destroy tears down
  #checkov:skip=CKV2_AWS_30:query logging of every statement would log account numbers; slow statements are logged
  identifier                      = "${var.name_prefix}-db"
  engine                          = "postgres"
  engine_version                  = "16"
  instance_class                  = var.instance_class
  allocated_storage               = var.allocated_storage
  storage_type                    = "gp3"
  storage_encrypted               = true
  db_name                         = var.db_name
  username                        = var.db_username
  password                        = var.db_password
  db_subnet_group_name            = aws_db_subnet_group.main.name
  vpc_security_group_ids          = [var.security_group_id]
  parameter_group_name            = aws_db_parameter_group.postgres.name
  publicly_accessible             = false
  multi_az                        = false
  backup_retention_period         = 7
  auto_minor_version_upgrade      = true
  copy_tags_to_snapshot           = true
  deletion_protection             = var.deletion_protection
  skip_final_snapshot             = var.skip_final_snapshot
  final_snapshot_identifier       = var.skip_final_snapshot ? null : "${var.name_prefix}-db-final"
  enabled_cloudwatch_logs_exports = ["postgresql"]
}
