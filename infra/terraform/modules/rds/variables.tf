variable "name_prefix" {
  description = "Prefix of every name"
  type        = string
}

variable "subnet_ids" {
  description = "Subnets of the database subnet group"
  type        = list(string)
}

variable "security_group_id" {
  description = "Group that admits the Fargate tasks on 5432"
  type        = string
}

variable "instance_class" {
  description = "Instance class"
  type        = string
  default     = "db.t4g.micro"
}

variable "allocated_storage" {
  description = "Storage in GiB (gp3)"
  type        = number
  default     = 20
}

variable "db_name" {
  description = "Database name"
  type        = string
  default     = "atm"
}

variable "db_username" {
  description = "Master user name"
  type        = string
  default     = "atm"
}

variable "db_password" {
  description = "Master user password"
  type        = string
  sensitive   = true
}

variable "deletion_protection" {
  description = "Refuse to delete the database"
  type        = bool
  default     = true
}

variable "skip_final_snapshot" {
  description = "Delete without a final snapshot"
  type        = bool
  default     = false
}
