# The names deploy.yml and docs/deployment.md use.

output "ecr_repository_url" {
  value = module.ecr.repository_url
}

output "ecs_cluster_name" {
  value = module.ecs.cluster_name
}

output "subnet_ids" {
  description = "Comma-separated, as the SUBNET_IDS variable of deploy.yml takes them"
  value       = join(",", module.networking.public_subnet_ids)
}

output "fargate_security_group_id" {
  description = "The SECURITY_GROUP_ID variable of deploy.yml"
  value       = module.security.fargate_security_group_id
}

output "migration_task_family" {
  value = module.ecs.migration_task_family
}

output "app_service_name" {
  value = module.ecs.service_names["app"]
}

output "host_service_name" {
  value = module.ecs.service_names["host"]
}

output "worker_service_name" {
  value = module.ecs.service_names["worker"]
}

output "statement_bucket" {
  value = module.s3.bucket_name
}

output "rds_endpoint" {
  value = "${module.rds.address}:${module.rds.port}"
}

output "log_group_names" {
  value = module.monitoring.log_group_names
}
