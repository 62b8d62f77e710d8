variable "name_prefix" {
  description = "Prefix of every name, e.g. atm-simulator-dev"
  type        = string
}

variable "vpc_cidr" {
  description = "Address range of the VPC"
  type        = string
  default     = "10.0.0.0/16"
}
