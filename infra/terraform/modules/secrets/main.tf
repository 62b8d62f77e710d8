# The product's secrets in Secrets Manager, read by ECS into the tasks' environment. The product
# has one synchronous driver (psycopg 3), so DATABASE_URL_SYNC holds the same URL as DATABASE_URL.

locals {
  database_url = "postgresql+psycopg://${var.db_username}:${urlencode(var.db_password)}@${var.db_address}:${var.db_port}/${var.db_name}?sslmode=require"
  values = {
    DATABASE_URL      = local.database_url
    DATABASE_URL_SYNC = local.database_url
    SECRET_KEY        = var.secret_key
    PIN_PEPPER        = var.pin_pepper
  }
}

resource "aws_secretsmanager_secret" "setting" {
  #checkov:skip=CKV2_AWS_57:the values come from terraform.tfvars; rotating them is a deliberate redeploy (a new PIN_PEPPER invalidates every PIN hash)
  #checkov:skip=CKV_AWS_149:encrypted with the AWS-managed key; a customer-managed key costs a dollar a month per key
  for_each                = local.values
  name                    = "${var.name_prefix}/${each.key}"
  recovery_window_in_days = var.recovery_window_in_days
}

resource "aws_secretsmanager_secret_version" "setting" {
  for_each      = local.values
  secret_id     = aws_secretsmanager_secret.setting[each.key].id
  secret_string = each.value
}
