output "log_group_names" {
  description = "Log group name by task: app, worker, migration, host"
  value       = { for task, group in aws_cloudwatch_log_group.task : task => group.name }
}
