output "cluster_name" {
  value = aws_ecs_cluster.main.name
}

output "service_names" {
  description = "Service name by role: app, host, worker"
  value       = { for role, service in aws_ecs_service.service : role => service.name }
}

output "migration_task_family" {
  value = aws_ecs_task_definition.migration.family
}
