variable "name_prefix" {
  description = "Prefix of the log group names"
  type        = string
}

variable "retention_in_days" {
  description = "Days the tasks' logs are kept"
  type        = number
  default     = 30
}

variable "cluster_name" {
  description = "ECS cluster of the alarm"
  type        = string
}

variable "app_service_name" {
  description = "ECS service of the API"
  type        = string
}
