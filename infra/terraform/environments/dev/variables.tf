variable "aws_region" {
  description = "AWS region of the environment"
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "Environment name (names become atm-simulator-<environment>-*)"
  type        = string
  default     = "dev"
}

variable "allowed_cidrs" {
  description = "CIDRs that may reach the API (8000) and the ISO 8583 host (8583)"
  type        = list(string)
}

variable "db_password" {
  description = "PostgreSQL master password"
  type        = string
  sensitive   = true
}

variable "secret_key" {
  description = "The product's SECRET_KEY (16 characters or more)"
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.secret_key) >= 16
    error_message = "secret_key: expected at least 16 characters."
  }
}

variable "pin_pepper" {
  description = "The product's PIN_PEPPER (16 characters or more; changing it invalidates every PIN)"
  type        = string
  sensitive   = true
  validation {
    condition     = length(var.pin_pepper) >= 16
    error_message = "pin_pepper: expected at least 16 characters."
  }
}

variable "worker_desired_count" {
  description = "Worker tasks at apply time (0 by default; scale up for statements and fleets)"
  type        = number
  default     = 0
}
