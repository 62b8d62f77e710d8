output "secret_arns" {
  description = "Secret ARN by setting name: DATABASE_URL, DATABASE_URL_SYNC, SECRET_KEY, PIN_PEPPER"
  value       = { for name, secret in aws_secretsmanager_secret.setting : name => secret.arn }
}
