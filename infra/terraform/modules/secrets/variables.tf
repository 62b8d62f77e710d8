variable "name_prefix" {
  description = "Prefix of the secret names"
  type        = string
}

variable "db_address" {
  description = "Database host name"
  type        = string
}

variable "db_port" {
  description = "Database port"
  type        = number
}

variable "db_name" {
  description = "Database name"
  type        = string
}

variable "db_username" {
  description = "Database user"
  type        = string
}

variable "db_password" {
  description = "Database password"
  type        = string
  sensitive   = true
}

variable "secret_key" {
  description = "SECRET_KEY of the product (16 characters or more)"
  type        = string
  sensitive   = true
}

variable "pin_pepper" {
  description = "PIN_PEPPER of the product (16 characters or more)"
  type        = string
  sensitive   = true
}

variable "recovery_window_in_days" {
  description = "Days a deleted secret can be restored (0: deleted at once)"
  type        = number
  default     = 7
}
