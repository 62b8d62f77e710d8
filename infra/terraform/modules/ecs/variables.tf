variable "name_prefix" {
  description = "Prefix of every name, e.g. atm-simulator-dev"
  type        = string
}

variable "environment_setting" {
  description = "The product's ENVIRONMENT (development, testing, production)"
  type        = string
  default     = "production"
}

variable "repository_url" {
  description = "ECR repository of the image"
  type        = string
}

variable "image_tag" {
  description = "Image tag the task definitions run (deploy.yml moves latest)"
  type        = string
  default     = "latest"
}

variable "redis_image" {
  description = "Image of the API's Redis sidecar"
  type        = string
  default     = "public.ecr.aws/docker/library/redis:7-alpine"
}

variable "secret_arns" {
  description = "Secret ARN by setting name (DATABASE_URL, DATABASE_URL_SYNC, SECRET_KEY, PIN_PEPPER)"
  type        = map(string)
}

variable "statement_bucket" {
  description = "Bucket of the statement PDFs"
  type        = string
}

variable "statement_bucket_arn" {
  description = "ARN of that bucket"
  type        = string
}

variable "log_group_names" {
  description = "Log group by task: app, worker, migration, host"
  type        = map(string)
}

variable "subnet_ids" {
  description = "Subnets of the services"
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the tasks"
  type        = string
}

variable "app_desired_count" {
  description = "API tasks"
  type        = number
  default     = 1
}

variable "host_desired_count" {
  description = "ISO 8583 host tasks"
  type        = number
  default     = 1
}

variable "worker_desired_count" {
  description = "Worker tasks (0: scaled up by hand when statements or fleets need one)"
  type        = number
  default     = 0
}

variable "container_insights" {
  description = "Container Insights on the cluster (billed per metric)"
  type        = bool
  default     = false
}
